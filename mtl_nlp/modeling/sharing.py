"""How tasks share the encoder: hard sharing, private top layers (with an optional soft L2 pull),
heads that read a lower layer, and frozen bottom layers.

The encoder stays a plain Hugging Face model holding the shared layers; each task with private
layers owns a copy of the encoder's layer stack module (e.g. BertEncoder) holding its top k
layers. A forward runs the shared layers once and replays the call the model made to its layer
stack on each requested task's private copy, so the attention mask and any position inputs are
exactly what the model prepared. Heads never know how the encoder is shared.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from mtl_nlp.errors import MtlNlpError


class SharingError(MtlNlpError, ValueError):
    """A sharing shape this encoder or these tasks cannot take."""


@dataclass
class SharingShape:
    """What a checkpoint records about how the encoder is shared; enough to rebuild it."""

    private_layers: int = 0  # top encoder layers copied per task
    soft_l2: float = 0.0  # lambda of sum_t |theta_t - mean theta|^2 over the private copies
    freeze_layers: int = 0  # embeddings and the bottom n layers get no updates
    freeze_embeddings: bool = False
    num_layers: int | None = None  # the pretrained encoder's layer count (shared + private)
    # The layer stack's modules other than its layers (DeBERTa's relative position embeddings,
    # MPNet's relative attention bias) are the shared stack's in every private copy, so a task's
    # export is exactly its model. Checkpoints saved before gave each copy its own (False).
    share_stack_modules: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Where encoders keep the module that runs their transformer layers as `.layer`: BERT, RoBERTa,
# ELECTRA, DeBERTa, MPNet, XLM-R, MiniLM in `encoder`, DistilBERT in `transformer`.
LAYER_STACKS = ("encoder", "transformer")


def layer_stack(encoder: PreTrainedModel) -> nn.Module:
    """The module holding the encoder's transformer layers as `.layer`; a clear error for
    encoders built another way (ALBERT shares one layer's weights across its depth, ModernBERT
    runs its layers from the model itself)."""
    return getattr(encoder, layer_stack_name(encoder))


def layer_stack_name(encoder: PreTrainedModel) -> str:
    """The encoder's attribute that holds its layer stack (see layer_stack)."""
    for name in LAYER_STACKS:
        stack = getattr(encoder, name, None)
        if stack is not None and isinstance(getattr(stack, "layer", None), nn.ModuleList):
            return name
    raise SharingError(
        f"private layers, per-task `layer` and frozen layers need an encoder whose layers sit in "
        f"`encoder.layer` or `transformer.layer` (BERT, RoBERTa, ELECTRA, DeBERTa, MPNet, XLM-R, "
        f"DistilBERT); {type(encoder).__name__} is built another way: use hard sharing "
        "(sharing.private_layers=0, no task `layer`, sharing.freeze_layers=0)"
    )


class _StopForward(Exception):
    """Raised by a hook once the deepest layer any requested head reads has run."""


def _tensor(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


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


class LayerSharing(nn.Module):
    """The private layer copies of each task and the routing of hidden states to the heads.

    `task_layers` maps each task to the encoder layer its head reads (1-based, None = the last).
    A task gets private copies only if its head reads above the shared layers.
    """

    def __init__(
        self, encoder: PreTrainedModel, shape: SharingShape, task_layers: dict[str, int | None],
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        # every shape that names layers is checked against the encoder's depth, so that
        # freeze_layers=100 is an error and not a silently frozen encoder
        names_layers = shape.private_layers or shape.freeze_layers or any(task_layers.values())
        stack = layer_stack(encoder) if names_layers else None
        total = shape.num_layers or (len(stack.layer) if stack is not None else None)
        self.shape = SharingShape(**{**shape.to_dict(), "num_layers": total})
        self.task_layers = dict(task_layers)
        self._check(total)
        self.shared_count = (total or 0) - shape.private_layers
        self.private = nn.ModuleDict()
        if shape.private_layers:
            self._split(encoder, stack, pretrained)
        self._freeze(encoder)

    def _check(self, total: int | None) -> None:
        shape = self.shape
        if total is None:
            return
        if shape.private_layers > total:
            raise SharingError(f"sharing.private_layers={shape.private_layers}, but the encoder has "
                               f"{total} layers")
        for task, layer in self.task_layers.items():
            if layer is not None and layer > total:
                raise SharingError(f"task {task!r}: layer {layer}, but the encoder has {total} layers")
        if shape.freeze_layers > total - shape.private_layers:
            raise SharingError(
                f"sharing.freeze_layers={shape.freeze_layers} exceeds the {total - shape.private_layers} "
                "shared layers (private layers are never frozen)"
            )

    def depth(self, task: str) -> int:
        """The layer (1-based) whose output `task`'s head reads."""
        return self.task_layers.get(task) or self.shape.num_layers or 0

    def _has_private(self, task: str) -> bool:
        return task in self.private

    def _split(self, encoder: PreTrainedModel, stack: nn.Module, pretrained: bool) -> None:
        """Move the top k layers out of the shared stack into one copy per task that reads them.

        From a pretrained encoder the copies start from the pretrained layers; when rebuilding a
        saved model (the saved encoder holds the shared layers only) they are placeholders that
        the checkpoint's weights overwrite."""
        shared, k = stack.layer, self.shape.private_layers
        if pretrained:
            top, bottom = list(shared[len(shared) - k :]), list(shared[: len(shared) - k])
        else:
            top, bottom = [copy.deepcopy(shared[-1]) for _ in range(k)], list(shared)
        stack.layer = nn.ModuleList(top)
        for task in self.task_layers:
            if self.depth(task) > self.shared_count:
                self.private[task] = copy.deepcopy(stack)
                if self.shape.share_stack_modules:
                    _use_shared_modules(self.private[task], stack)
        stack.layer = nn.ModuleList(bottom)
        encoder.config.num_hidden_layers = len(bottom)
        # The saved config.json is what AutoModel.from_pretrained(DIR) reads: it says that it
        # holds the shared layers only, and where each task's whole encoder comes from.
        encoder.config.mtl_nlp_encoder = (
            f"the {len(bottom)} shared bottom layers of a {self.shape.num_layers}-layer encoder: each "
            f"task's top {k} layer(s) are in private_layers.safetensors; `mtl-nlp export DIR --task NAME` "
            "writes a task's whole model"
        )

    def _freeze(self, encoder: PreTrainedModel) -> None:
        shape = self.shape
        frozen: list[nn.Module] = []
        if shape.freeze_embeddings or shape.freeze_layers:
            frozen.append(getattr(encoder, "embeddings", None) or encoder.get_input_embeddings())
        if shape.freeze_layers:
            frozen.extend(layer_stack(encoder).layer[: shape.freeze_layers])
        for module in frozen:
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    @property
    def is_trivial(self) -> bool:
        """Hard sharing with every head on the last layer: one plain encoder call does it all."""
        return not self.private and not any(self.task_layers.values())

    def hidden_states(
        self, encoder: PreTrainedModel, inputs: dict[str, Tensor], tasks: list[str]
    ) -> dict[str, Tensor]:
        """{task: the hidden states its head reads}, running the shared layers once, stopping
        after the deepest shared layer any requested head needs, and each requested task's
        private layers only for that task."""
        if self.is_trivial:
            hidden = encoder(**inputs).last_hidden_state
            return dict.fromkeys(tasks, hidden)
        stack = layer_stack(encoder)
        wanted = {self.depth(task) for task in tasks if not self._has_private(task)}
        needs_top = any(self._has_private(task) for task in tasks)
        deepest = self.shared_count if needs_top else max(wanted)
        captured: dict[int, Tensor] = {}
        call: dict[str, Any] = {}

        def record_call(module, args, kwargs):
            call.update(args=args, kwargs=kwargs)
            if deepest == 0:  # every layer is private: the shared part ends at the embeddings
                captured[0] = _call_hidden(module, call)
                raise _StopForward

        def keep(depth: int):
            def hook(module, args, output):
                captured[depth] = _tensor(output)
                if depth == deepest:
                    raise _StopForward
            return hook

        handles = [stack.register_forward_pre_hook(record_call, with_kwargs=True)]
        for depth in wanted | {deepest}:
            if depth >= 1:
                handles.append(stack.layer[depth - 1].register_forward_hook(keep(depth)))
        try:
            encoder(**inputs)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        results = {}
        for task in tasks:
            if self._has_private(task):
                results[task] = self._private_states(task, captured[deepest], call)
            else:
                results[task] = captured[self.depth(task)]
        return results

    def _private_states(self, task: str, shared: Tensor, call: dict[str, Any]) -> Tensor:
        """Replay the layer-stack call on `task`'s private copy, from the shared layers' output."""
        private = self.private[task]
        depth = self.depth(task) - self.shared_count
        if depth == len(private.layer):
            output = _replay(private, call, shared)
            return output.last_hidden_state if hasattr(output, "last_hidden_state") else _tensor(output)
        captured: dict[str, Tensor] = {}

        def hook(module, args, output):
            captured["hidden"] = _tensor(output)
            raise _StopForward

        handle = private.layer[depth - 1].register_forward_hook(hook)
        try:
            _replay(private, call, shared)
        except _StopForward:
            pass
        finally:
            handle.remove()
        return captured["hidden"]

    def penalty(self) -> Tensor | None:
        """soft_l2 * sum_t |theta_t - mean_t theta|^2 over the private copies (None when off)."""
        if not self.shape.soft_l2 or len(self.private) < 2:
            return None
        copies = [dict(module.named_parameters()) for module in self.private.values()]
        total = None
        for name in copies[0]:
            stacked = torch.stack([params[name].float() for params in copies])
            term = (stacked - stacked.mean(dim=0)).pow(2).sum()
            total = term if total is None else total + term
        return self.shape.soft_l2 * total
