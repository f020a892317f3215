"""How tasks share the encoder: hard sharing, private top layers (with an optional soft L2 pull),
heads that read a lower layer, and frozen bottom layers.

The encoder stays a plain Hugging Face model holding the shared layers; each task with private
layers owns a copy of the encoder's top k layers. A forward runs the shared layers once and each
requested task's private layers on what the shared ones produced, with the inputs the model
prepared for those layers (mtl_nlp/modeling/layer_layouts.py says how, per kind of encoder).
Heads never know how the encoder is shared.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from mtl_nlp.modeling.adapters import AdapterShape, TaskAdapters, is_adapter_parameter
from mtl_nlp.modeling.layer_layouts import LoopLayout, SharingError, layout_of

__all__ = ["LayerSharing", "SharingError", "SharingShape", "layout_of"]


@dataclass
class SharingShape:
    """What a checkpoint records about how the encoder is shared; enough to rebuild it."""

    private_layers: int = 0  # top encoder layers copied per task
    soft_l2: float = 0.0  # lambda of sum_t |theta_t - mean theta|^2 over the private copies
    freeze_layers: int = 0  # embeddings and the bottom n layers get no updates
    freeze_embeddings: bool = False
    freeze_encoder: bool = False  # the whole shared encoder gets no updates
    num_layers: int | None = None  # the pretrained encoder's layer count (shared + private)
    # The layer stack's modules other than its layers (DeBERTa's relative position embeddings,
    # MPNet's relative attention bias) are the shared stack's in every private copy, so a task's
    # export is exactly its model. Checkpoints saved before gave each copy its own (False).
    share_stack_modules: bool = True
    # Each layer's attention kind in the pretrained encoder, for encoders whose layers differ
    # (ModernBERT's global and sliding-window layers), so that private copies and exports rebuild
    # every layer as it was; None where all layers are alike.
    layer_types: list[str] | None = field(default=None)
    # per-task LoRA adapters in the shared encoder (modeling/adapters.py); None: no adapters
    adapters: AdapterShape | None = None

    def __post_init__(self) -> None:
        if isinstance(self.adapters, dict):  # read from a checkpoint's JSON
            self.adapters = AdapterShape(**self.adapters)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def same_weights_as(self, other: SharingShape) -> bool:
        """Whether a model of this shape holds the weights of one of `other`'s: every field but
        what is frozen, which changes training, not the weights' layout."""
        frozen = {"freeze_layers": 0, "freeze_embeddings": False, "freeze_encoder": False}
        return {**self.to_dict(), **frozen} == {**other.to_dict(), **frozen}


class LayerSharing(nn.Module):
    """The private layer copies of each task and the routing of hidden states to the heads.

    `task_layers` maps each task to the encoder layer its head reads (1-based, None = the last).
    A task gets private copies only if its head reads above the shared layers. The tasks in
    `mixed` read every layer's states, stacked (their heads mix them; see layer_mix.py).
    With adapters (`shape.adapters`), `adapter_of` maps each task to its adapter's name (an entry's
    heads share the entry's), and a task's states are computed with its adapter active.
    """

    def __init__(
        self, encoder: PreTrainedModel, shape: SharingShape, task_layers: dict[str, int | None],
        pretrained: bool = True, mixed: set[str] | frozenset[str] = frozenset(),
        adapter_of: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.mixed = frozenset(mixed)
        if self.mixed and shape.private_layers:
            raise SharingError(f"task(s) {', '.join(sorted(self.mixed))}: a layer mix reads every layer of "
                               "one shared encoder, and sharing.private_layers gives each task layers of its "
                               "own: use one or the other")
        both = sorted(task for task in self.mixed if task_layers.get(task) is not None)
        if both:
            raise SharingError(f"task(s) {', '.join(both)}: a head reads one `layer` or a `layer_mix` of "
                               "them all, not both")
        # every shape that names layers is checked against the encoder's depth, so that
        # freeze_layers=100 is an error and not a silently frozen encoder
        names_layers = shape.private_layers or shape.freeze_layers or any(task_layers.values())
        self.layout = layout_of(encoder) if names_layers else None
        total = shape.num_layers or (len(self.layout.layers(encoder)) if self.layout else None)
        layer_types = shape.layer_types
        if layer_types is None and isinstance(self.layout, LoopLayout):  # from the pretrained config
            layer_types = list(getattr(encoder.config, "layer_types", None) or []) or None
        self.shape = SharingShape(**{**shape.to_dict(), "num_layers": total, "layer_types": layer_types})
        self.task_layers = dict(task_layers)
        self._check(total)
        self.shared_count = (total or 0) - shape.private_layers
        self.private = nn.ModuleDict()
        if shape.private_layers:
            self._split(encoder, pretrained)
        self.adapter_of = dict(adapter_of or {})
        self.adapters = self._inject_adapters(encoder) if shape.adapters is not None else None
        if self.adapters is not None:
            self.shape.adapters = self.adapters.shape
        self._freeze(encoder)

    def _inject_adapters(self, encoder: PreTrainedModel) -> TaskAdapters:
        """Each task's adapter (an entry's heads share one), in the order the tasks come."""
        if self.shape.private_layers:
            raise SharingError("sharing.adapters gives each task an adapter in the shared layers, and "
                               "sharing.private_layers gives each task layers of its own: use one or "
                               "the other")
        for task in self.task_layers:
            self.adapter_of.setdefault(task, task)
        names = list(dict.fromkeys(self.adapter_of[task] for task in self.task_layers))
        return TaskAdapters(encoder, AdapterShape(**{**self.shape.adapters.to_dict(), "names": names}))

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

    def _split(self, encoder: PreTrainedModel, pretrained: bool) -> None:
        """Move the top k layers out of the shared encoder into one copy per task that reads them
        (from a pretrained encoder the copies start as the pretrained layers)."""
        k = self.shape.private_layers
        tasks = [task for task in self.task_layers if self.depth(task) > self.shared_count]
        copies = self.layout.split(encoder, k, pretrained, tasks, self.shape.share_stack_modules,
                                   self.shape.layer_types)
        self.private.update(copies)
        # The saved config.json is what AutoModel.from_pretrained(DIR) reads: it says that it
        # holds the shared layers only, and where each task's whole encoder comes from.
        encoder.config.mtl_nlp_encoder = (
            f"the {self.shared_count} shared bottom layers of a {self.shape.num_layers}-layer encoder: each "
            f"task's top {k} layer(s) are in private_layers.safetensors; `mtl-nlp export DIR --task NAME` "
            "writes a task's whole model"
        )

    def saving(self, encoder: PreTrainedModel) -> Any:
        """A context in which the encoder saves as the shared layers it holds (see layer_layouts)."""
        return self.layout.saving(encoder, self.shared_count) if self.private else nullcontext()

    def _freeze(self, encoder: PreTrainedModel) -> None:
        shape = self.shape
        frozen: list[nn.Module] = [encoder] if shape.freeze_encoder else []
        if shape.freeze_embeddings or shape.freeze_layers:
            frozen.append(getattr(encoder, "embeddings", None) or encoder.get_input_embeddings())
        if shape.freeze_layers:
            frozen.extend(self.layout.layers(encoder)[: shape.freeze_layers])
        for module in frozen:
            for name, parameter in module.named_parameters():
                if not is_adapter_parameter(f".{name}"):  # an adapter trains in a frozen layer
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
        private layers only for that task. With adapters, the tasks of each adapter are computed
        with it active: one pass per adapter, or the layers below the adapters once."""
        if self.adapters is not None:
            return self._through_adapters(encoder, inputs, tasks)
        return self._states(encoder, inputs, tasks)

    def _through_adapters(
        self, encoder: PreTrainedModel, inputs: dict[str, Tensor], tasks: list[str]
    ) -> dict[str, Tensor]:
        groups: dict[str, list[str]] = {}
        for task in tasks:
            groups.setdefault(self.adapter_of[task], []).append(task)
        top_reading = not self.mixed.intersection(tasks) and not any(self.task_layers.get(t) for t in tasks)
        if self.adapters.runs_bottom_once(encoder, len(groups), top_reading):
            return self.adapters.states_from_shared_bottom(encoder, inputs, groups)
        results = {}
        for name, group in groups.items():
            self.adapters.activate(name)
            results.update(self._states(encoder, inputs, group))
        return results

    def _states(
        self, encoder: PreTrainedModel, inputs: dict[str, Tensor], tasks: list[str]
    ) -> dict[str, Tensor]:
        """hidden_states without adapters (or with one adapter active)."""
        if self.mixed.intersection(tasks):
            return self._with_every_layer(encoder, inputs, tasks)
        if self.is_trivial:
            hidden = encoder(**inputs).last_hidden_state
            return dict.fromkeys(tasks, hidden)
        wanted = {self.depth(task) for task in tasks if not self._has_private(task)}
        needs_private = any(self._has_private(task) for task in tasks)
        deepest = self.shared_count if needs_private else max(wanted)
        captured, calls = self.layout.run(encoder, inputs, wanted, deepest, needs_private)
        results = {}
        for task in tasks:
            if self._has_private(task):
                hidden = self.layout.private_states(self.private[task], calls, captured[deepest],
                                                    self.depth(task) - self.shared_count)
            else:
                hidden = captured[self.depth(task)]
            results[task] = self.layout.finish(encoder, hidden)
        return results

    def _with_every_layer(
        self, encoder: PreTrainedModel, inputs: dict[str, Tensor], tasks: list[str]
    ) -> dict[str, Tensor]:
        """One pass that keeps every layer's states: a mixing task gets them stacked [layers + 1,
        batch, length, hidden] (the embeddings' output first), the others their layer's."""
        output = encoder(**inputs, output_hidden_states=True)
        every = output.hidden_states
        stacked = torch.stack(every)
        results = {}
        for task in tasks:
            if task in self.mixed:
                results[task] = stacked
            elif self.task_layers.get(task) is not None:
                results[task] = self.layout.finish(encoder, every[self.task_layers[task]])
            else:
                results[task] = output.last_hidden_state
        return results

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
