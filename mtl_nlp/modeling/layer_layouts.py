"""Where an encoder keeps its transformer layers, and how a task's private copy of the top layers
runs exactly as those layers ran inside the encoder.

Two layouts cover the supported families:
- StackLayout: the layers sit in a stack module (`encoder.layer`, `transformer.layer`) that the
  model calls once (BERT, RoBERTa, ELECTRA, DeBERTa, MPNet, XLM-R, DistilBERT). A private copy is
  a copy of the stack; it runs by replaying the call the model made to the shared stack, so the
  attention mask and any position inputs are what the model prepared.
- LoopLayout: the model runs its layers itself, giving each layer inputs of its own kind, then a
  final norm (ModernBERT: a global or a sliding-window attention mask and rotary embeddings per
  layer). The top k places of the model's layer list hold parameterless slots that record what
  the model passes each place; a private copy's layers run on what their places received.
Both hand back the raw output of the layer a head reads; `finish` applies what the encoder applies
after its last layer (ModernBERT's final norm), so a head on layer n reads what the encoder cut to
n layers returns, which is what its export computes.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from mtl_nlp.common.errors import MtlNlpError

# Where encoders keep the module that runs their transformer layers as `.layer`: BERT, RoBERTa,
# ELECTRA, DeBERTa, MPNet, XLM-R, MiniLM in `encoder`, DistilBERT in `transformer`.
LAYER_STACKS = ("encoder", "transformer")


class SharingError(MtlNlpError, ValueError):
    """A sharing shape this encoder or these tasks cannot take."""


class StopForward(Exception):
    """Raised by a hook once the deepest layer any requested head reads has run."""


def stop_forward() -> None:
    """End the forward here (StopForward), except while torch.export traces it (the ONNX engine):
    an exception leaving a module breaks the trace, so the exported graph runs every layer of the
    call, as a plain encoder call does."""
    if not torch.compiler.is_exporting():
        raise StopForward


def _tensor(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


class PrivateLayers(nn.Module):
    """A task's private copy of the top layers of a layer-loop encoder, under the same `layer.{i}`
    names a copied layer stack uses."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(layers)


class LayerSlot(nn.Module):
    """Stands in the model's layer list where a private layer was: passes the hidden states on
    unchanged, so the model still prepares this place's inputs (a hook records them)."""

    def __init__(self, attention_type: str | None) -> None:
        super().__init__()
        self.attention_type = attention_type  # read by the model's loop to pick the layer's inputs

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return hidden_states


def _run(encoder: PreTrainedModel, inputs: dict[str, Tensor], handles: list) -> None:
    """One encoder call that ends where a hook raises StopForward; the hooks are removed after."""
    try:
        encoder(**inputs)
    except StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()


def _capture(layers: nn.ModuleList, depths: set[int], stop_at: int | None,
             captured: dict[int, Tensor]) -> list:
    """Forward hooks that keep the output of layer `depth` (1-based) for each of `depths`, and stop
    the forward after layer `stop_at` (None: never)."""
    def keep(depth: int):
        def hook(module, args, output):
            captured[depth] = _tensor(output)
            if depth == stop_at:
                stop_forward()
        return hook

    return [layers[depth - 1].register_forward_hook(keep(depth)) for depth in depths if depth >= 1]


class StackLayout:
    """Layers in a stack module the model calls once (see the module docstring)."""

    def __init__(self, stack_name: str) -> None:
        self.stack_name = stack_name
        self.path = f"{stack_name}.layer"  # where the layers sit, under the encoder

    def layers(self, encoder: PreTrainedModel) -> nn.ModuleList:
        return getattr(encoder, self.stack_name).layer

    def split(self, encoder: PreTrainedModel, k: int, pretrained: bool, tasks: list[str],
              share_stack_modules: bool, layer_types: list[str] | None) -> dict[str, nn.Module]:
        """Move the top k layers out of the stack into one copy of the stack per task.

        From a pretrained encoder the copies start from the pretrained layers; when rebuilding a
        saved model (its encoder holds the shared layers only) they are placeholders that the
        checkpoint's weights overwrite."""
        stack = getattr(encoder, self.stack_name)
        shared = stack.layer
        if pretrained:
            top, bottom = list(shared[len(shared) - k:]), list(shared[: len(shared) - k])
        else:
            places = range(len(shared), len(shared) + k)  # the saved encoder holds the shared layers only
            top, bottom = fresh_layers(self, encoder, places.stop, layer_types, places), list(shared)
        stack.layer = nn.ModuleList(top)
        private = {}
        for task in tasks:
            private[task] = copy.deepcopy(stack)
            if share_stack_modules:
                _use_shared_modules(private[task], stack)
        stack.layer = nn.ModuleList(bottom)
        encoder.config.num_hidden_layers = len(bottom)
        return private

    def run(self, encoder: PreTrainedModel, inputs: dict[str, Tensor], depths: set[int],
            deepest: int, needs_private: bool) -> tuple[dict[int, Tensor], Any]:
        """Run the shared layers up to `deepest`, keeping the output of each of `depths` (0: the
        stack's input); returns those and the stack call, for the private copies to replay."""
        stack = getattr(encoder, self.stack_name)
        captured: dict[int, Tensor] = {}
        call: dict[str, Any] = {}

        def record_call(module, args, kwargs):
            call.update(args=args, kwargs=kwargs)
            if deepest == 0:  # every layer is private: the shared part ends at the embeddings
                captured[0] = _call_hidden(module, call)
                stop_forward()

        handles = [stack.register_forward_pre_hook(record_call, with_kwargs=True)]
        handles += _capture(stack.layer, depths | {deepest}, deepest, captured)
        _run(encoder, inputs, handles)
        return captured, call

    def private_states(self, private: nn.Module, call: dict[str, Any], shared: Tensor, depth: int) -> Tensor:
        """Replay the stack call on a private copy from the shared layers' output, up to its
        layer `depth` (1-based)."""
        if depth == len(private.layer):
            output = _replay(private, call, shared)
            return output.last_hidden_state if hasattr(output, "last_hidden_state") else _tensor(output)
        captured: dict[int, Tensor] = {}
        _run_replay(private, call, shared, _capture(private.layer, {depth}, depth, captured))
        return captured[depth]

    def finish(self, encoder: PreTrainedModel, hidden: Tensor) -> Tensor:
        return hidden

    def saving(self, encoder: PreTrainedModel, shared: int) -> Any:
        """The encoder's config already counts the shared layers only."""
        return nullcontext()

    def export_config(self, config: Any, depth: int, layer_types: list[str] | None) -> None:
        config.num_hidden_layers = depth


class LoopLayout:
    """Layers the model runs itself in `encoder.layers`, then `encoder.final_norm` (ModernBERT;
    see the module docstring)."""

    path = "layers"

    def layers(self, encoder: PreTrainedModel) -> nn.ModuleList:
        return encoder.layers

    def split(self, encoder: PreTrainedModel, k: int, pretrained: bool, tasks: list[str],
              share_stack_modules: bool, layer_types: list[str] | None) -> dict[str, nn.Module]:
        """Move the top k layers into one copy per task and leave a slot in each place.

        `layer_types` is every layer's attention kind in the pretrained encoder; when rebuilding
        a saved model (its encoder holds the shared layers only) the copies are new layers of
        their places' kinds, which the checkpoint's weights overwrite."""
        layers = list(encoder.layers)
        shared = len(layers) - k if pretrained else len(layers)
        if shared == 0:  # a ModernBERT config of no layers does not load in transformers
            raise SharingError(f"sharing.private_layers={k} leaves {type(encoder).__name__} no shared layer; "
                               f"keep at least one (sharing.private_layers={k - 1} at most)")
        top = layers[shared:] if pretrained else fresh_layers(self, encoder, shared + k, layer_types,
                                                                range(shared, shared + k))
        kinds = [getattr(layer, "attention_type", None) for layer in top]
        encoder.layers = nn.ModuleList([*layers[:shared], *(LayerSlot(kind) for kind in kinds)])
        # The live config keeps the full depth and every place's kind, so the model prepares the
        # inputs of every place (a rotary embedding per kind); `saving` writes the shared depth.
        encoder.config.num_hidden_layers = shared + k
        if layer_types is not None:
            encoder.config.layer_types = list(layer_types)
            rotary = getattr(encoder, "rotary_emb", None)
            if rotary is not None and set(layer_types) - set(rotary.layer_types):  # rebuilt from a save
                encoder.rotary_emb = type(rotary)(encoder.config, device=encoder.device)
        return {task: PrivateLayers(copy.deepcopy(top)) for task in tasks}

    @contextmanager
    def saving(self, encoder: PreTrainedModel, shared: int) -> Iterator[None]:
        """While the encoder saves: its config counts the `shared` layers it holds, so that
        AutoModel.from_pretrained(DIR) builds what DIR holds."""
        config = encoder.config
        depth, kinds = config.num_hidden_layers, getattr(config, "layer_types", None)
        config.num_hidden_layers = shared
        if kinds is not None:
            config.layer_types = list(kinds[:shared])
        try:
            yield
        finally:
            config.num_hidden_layers = depth
            if kinds is not None:
                config.layer_types = kinds

    def run(self, encoder: PreTrainedModel, inputs: dict[str, Tensor], depths: set[int],
            deepest: int, needs_private: bool) -> tuple[dict[int, Tensor], Any]:
        """Run the shared layers, keeping the output of each of `depths`; when a private copy is
        wanted, also run through the slots, recording each place's inputs (its calls)."""
        captured: dict[int, Tensor] = {}
        slots = [layer for layer in encoder.layers if isinstance(layer, LayerSlot)]
        shared = len(encoder.layers) - len(slots)
        calls: list[dict[str, Any]] = []

        def record(module, args, kwargs):
            if not calls:  # the first slot's input is the shared layers' output
                captured[shared] = args[0] if args else kwargs["hidden_states"]
            calls.append(kwargs)
            if len(calls) == len(slots):
                stop_forward()

        kept = {depth for depth in depths | {deepest} if depth <= shared}
        handles = _capture(encoder.layers, kept, None if needs_private else deepest, captured)
        if needs_private:
            handles += [slot.register_forward_pre_hook(record, with_kwargs=True) for slot in slots]
        _run(encoder, inputs, handles)
        return captured, calls

    def private_states(self, private: nn.Module, calls: list[dict[str, Any]], shared: Tensor,
                       depth: int) -> Tensor:
        """Run a private copy's layers up to its layer `depth` (1-based), each on the inputs the
        model prepared for its place."""
        hidden = shared
        for layer, call in zip(private.layer[:depth], calls):
            hidden = _tensor(layer(hidden, **call))
        return hidden

    def finish(self, encoder: PreTrainedModel, hidden: Tensor) -> Tensor:
        return encoder.final_norm(hidden)

    def export_config(self, config: Any, depth: int, layer_types: list[str] | None) -> None:
        config.num_hidden_layers = depth
        if layer_types is not None:
            config.layer_types = list(layer_types[:depth])


def fresh_layers(layout: StackLayout | LoopLayout, encoder: PreTrainedModel, total: int,
                 layer_types: list[str] | None, places: range) -> list[nn.Module]:
    """Newly initialised layers for `places` of the encoder at its full depth `total`, each built
    as the family builds the layer of that place (ModernBERT: its attention kind; its first layer
    has no attention norm). A model of the full depth is built weightless (meta device) and the
    layers taken from it get storage and the family's initialisation."""
    config = copy.deepcopy(encoder.config)
    config.num_hidden_layers = total
    if layer_types is not None:
        config.layer_types = list(layer_types)
    with torch.device("meta"):
        donor = type(encoder)(config)
    layers = [layout.layers(donor)[place].to_empty(device=encoder.device) for place in places]
    for layer in layers:
        layer.apply(encoder._init_weights)
    return layers


def layout_of(encoder: PreTrainedModel) -> StackLayout | LoopLayout:
    """The encoder's layer layout; a SharingError naming the way out for encoders built another
    way (ALBERT shares one layer's weights across its depth)."""
    for name in LAYER_STACKS:
        stack = getattr(encoder, name, None)
        if stack is not None and isinstance(getattr(stack, "layer", None), nn.ModuleList):
            return StackLayout(name)
    if isinstance(getattr(encoder, "layers", None), nn.ModuleList) and hasattr(encoder, "final_norm"):
        return LoopLayout()
    raise SharingError(
        f"private layers, per-task `layer` and frozen layers need an encoder whose layers sit in "
        f"`encoder.layer` or `transformer.layer` (BERT, RoBERTa, ELECTRA, DeBERTa, MPNet, XLM-R, "
        f"DistilBERT) or that runs `layers` then `final_norm` itself (ModernBERT); "
        f"{type(encoder).__name__} is built another way: use hard sharing "
        "(sharing.private_layers=0, no task `layer`, sharing.freeze_layers=0)"
    )


def _use_shared_modules(private: nn.Module, stack: nn.Module) -> None:
    """Make the private copy's modules other than `layer` the shared stack's own: they are looked
    up as plain attributes, not registered as the copy's children, so their parameters train and
    save once (under the shared encoder) and every copy reads the current ones."""
    for name in [name for name in private._modules if name != "layer"]:
        del private._modules[name]
        object.__setattr__(private, name, getattr(stack, name))


def _hidden_name(stack: nn.Module) -> str:
    """The name of the stack's first forward parameter: the hidden states it runs its layers on."""
    return next(iter(inspect.signature(stack.forward).parameters))


def _call_hidden(stack: nn.Module, call: dict[str, Any]) -> Tensor:
    """The hidden states a recorded stack call was given, by position or by name (DistilBERT's
    Transformer is called with `hidden_states=`)."""
    return call["args"][0] if call["args"] else call["kwargs"][_hidden_name(stack)]


def _replay(stack: nn.Module, call: dict[str, Any], hidden: Tensor) -> Any:
    """Call `stack` (a private copy) as the shared stack was called, on `hidden` instead."""
    if call["args"]:
        return stack(hidden, *call["args"][1:], **call["kwargs"])
    return stack(**{**call["kwargs"], _hidden_name(stack): hidden})


def _run_replay(stack: nn.Module, call: dict[str, Any], hidden: Tensor, handles: list) -> None:
    try:
        _replay(stack, call, hidden)
    except StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
