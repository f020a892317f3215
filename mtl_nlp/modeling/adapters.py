"""Per-task LoRA adapters in the shared encoder, injected and saved by peft.

Every task (an entry of several heads: the entry) gets its own adapter in the same modules of the
one encoder; a forward activates the adapter of the task it computes, so a training step trains
the batch's adapter and head and nothing else of the other tasks. All adapters stay trainable
(peft's `set_adapter` would freeze the inactive ones), so every one is in the optimizer from the
start and DDP sees the same trainable parameters on every step.

With adapters in the top k layers only, the layers below are the same for every task: answering
several tasks runs them once and each task's adapted top layers on their output, as private
layers run (layer_layouts.py).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from mtl_nlp.modeling.layer_layouts import SharingError, StackLayout, layout_of

ADAPTER_PREFIX = "lora_"  # peft's LoRA parameters: `<module>.lora_A.<adapter>.weight`
ADAPTERS_DIR = "adapters"  # in a checkpoint: one peft adapter folder per task, adapters/<task>/
# The modules LoRA adapts by default per family: the attention's query and value projections
# (LoRA's choice; peft's defaults where it has them). ModernBERT fuses q, k and v in one module.
FAMILY_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"], "electra": ["query", "value"], "albert": ["query", "value"],
    "deberta-v2": ["query_proj", "value_proj"], "distilbert": ["q_lin", "v_lin"], "mpnet": ["q", "v"],
    "modernbert": ["Wqkv"],
}
INSTALL_HINT = "sharing.adapters needs peft: pip install 'mtl-nlp[adapters]' (or pip install peft)"


@dataclass
class AdapterShape:
    """What a checkpoint records about its adapters: enough to rebuild them before their weights load."""

    method: str = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: list[str] | None = None  # None: FAMILY_TARGETS of the encoder's family
    layers: int | str = "all"  # all, or the top k layers
    train_base: bool = False  # the shared encoder trains beside the adapters
    # the pretrained encoder (Hub id or path) a frozen base keeps; None: the checkpoint's own encoder
    base: str | None = None
    names: list[str] = field(default_factory=list)  # one adapter per task (or entry), in this order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_adapter_parameter(name: str) -> bool:
    """Whether a parameter name (a model's or an encoder's) is one of an adapter's weights."""
    return f".{ADAPTER_PREFIX}" in name


def _peft() -> Any:
    try:
        import peft
    except ImportError as exc:
        raise SharingError(INSTALL_HINT) from exc
    return peft


class TaskAdapters:
    """The adapters of every task in one encoder (peft injects them in place), and which is active.

    Not an nn.Module: the adapters' weights are the encoder's (peft puts them inside the modules it
    adapts), so they train, move and save with it; this holds peft's model around the encoder."""

    def __init__(self, encoder: PreTrainedModel, shape: AdapterShape) -> None:
        peft = _peft()
        if not shape.names:
            raise SharingError("sharing.adapters: no task to give an adapter")
        if "default" in shape.names:
            raise SharingError("a task named 'default' cannot have an adapter: peft saves its adapter "
                               "named so at the root of a folder; rename the task")
        self.total = encoder.config.num_hidden_layers
        targets = shape.target_modules or _family_targets(encoder)
        _check_targets(encoder, targets)
        self.top_k = None if shape.layers == "all" else int(shape.layers)
        config = peft.LoraConfig(r=shape.r, lora_alpha=shape.alpha, lora_dropout=shape.dropout,
                                 target_modules=list(targets), **self._layer_keys(encoder))
        self.shape = AdapterShape(**{**shape.to_dict(), "target_modules": list(targets)})
        self.names = list(shape.names)
        self.peft_model = peft.PeftModel(encoder, config, adapter_name=self.names[0])
        for name in self.names[1:]:
            self.peft_model.add_adapter(name, config)
        self.active = self.names[0]
        self.peft_model.base_model.set_adapter(self.active)
        self.make_trainable(encoder)

    def _layer_keys(self, encoder: PreTrainedModel) -> dict[str, Any]:
        """LoraConfig's layer keys: every layer, or the top k of the layer stack."""
        if self.top_k is None:
            return {}
        try:
            path = layout_of(encoder).path
        except SharingError as exc:
            raise SharingError(f"sharing.adapters.layers={self.top_k} needs layers in a list; "
                               f"{type(encoder).__name__} shares one layer across its depth: use "
                               "sharing.adapters.layers=all") from exc
        if self.top_k > self.total:
            raise SharingError(f"sharing.adapters.layers={self.top_k}, but the encoder has "
                               f"{self.total} layers")
        return {"layers_to_transform": list(range(self.total - self.top_k, self.total)),
                "layers_pattern": path.split(".")[-1]}

    def make_trainable(self, encoder: PreTrainedModel) -> None:
        """Every adapter trains; the shared encoder only with train_base."""
        for name, parameter in encoder.named_parameters():
            parameter.requires_grad_(is_adapter_parameter(name) or self.shape.train_base)

    def activate(self, name: str) -> None:
        """Route the encoder's forward through `name`'s adapter, every adapter staying trainable."""
        if name == self.active:
            return
        tuner = self.peft_model.base_model
        tuner.set_adapter(name)
        tuner.set_requires_grad(self.names, True)  # set_adapter froze the others
        self.active = name

    def base_state_dict(self) -> dict[str, Tensor]:
        """The shared encoder's weights under its own keys, as AutoModel.from_pretrained reads them."""
        from peft.utils.save_and_load import get_base_model_state_dict

        return get_base_model_state_dict(self.peft_model)

    def load_base(self, state: dict[str, Tensor]) -> None:
        """Copy an encoder's weights (its own keys, no adapters) into the base under the adapters."""
        from peft.utils.save_and_load import set_base_model_state_dict

        with torch.no_grad():
            set_base_model_state_dict(self.peft_model, state, strict=True)

    def copy_adapter(self, other: TaskAdapters, name: str) -> None:
        """Take adapter `name`'s weights from `other` (a model with an adapter of that name)."""
        from peft.utils.save_and_load import get_peft_model_state_dict, set_peft_model_state_dict

        weights = get_peft_model_state_dict(other.peft_model, adapter_name=name)
        result = set_peft_model_state_dict(self.peft_model, weights, adapter_name=name)
        if result.unexpected_keys:
            raise SharingError(f"adapter {name!r}: weights of another shape ({result.unexpected_keys[:3]})")

    def save(self, folder: Path) -> None:
        """Each adapter as peft saves it: folder/<name>/adapter_config.json and its safetensors."""
        self.peft_model.save_pretrained(str(folder), selected_adapters=self.names)

    def load(self, folder: Path) -> None:
        """Load every adapter's weights saved by `save` (the adapters exist already)."""
        from peft.utils.save_and_load import load_peft_weights, set_peft_model_state_dict

        for name in self.names:
            weights = load_peft_weights(str(folder / name), device="cpu")
            result = set_peft_model_state_dict(self.peft_model, weights, adapter_name=name)
            missing = [key for key in result.missing_keys if is_adapter_parameter(key) and f".{name}." in key]
            if result.unexpected_keys or missing:
                raise SharingError(f"{folder / name}: adapter weights do not fit this model (missing "
                                   f"{missing[:3]}, unexpected {list(result.unexpected_keys)[:3]})")

    def runs_bottom_once(self, encoder: PreTrainedModel, groups: int, top_reading: bool) -> bool:
        """Whether several tasks' states can share one run of the layers below the adapters."""
        return (groups > 1 and top_reading and self.top_k is not None and self.top_k < self.total
                and isinstance(layout_of(encoder), StackLayout))

    def states_from_shared_bottom(
        self, encoder: PreTrainedModel, inputs: dict[str, Tensor], groups: dict[str, list[str]]
    ) -> dict[str, Tensor]:
        """{task: last hidden states}: the layers without adapters once, then each adapter's top
        layers on their output (the stack call replayed on the top layers alone)."""
        layout = layout_of(encoder)
        bottom = self.total - self.top_k
        captured, call = layout.run(encoder, inputs, {bottom}, bottom, True)
        top = _top_of_stack(getattr(encoder, layout.stack_name), bottom)
        results = {}
        for name, tasks in groups.items():
            self.activate(name)
            hidden = layout.private_states(top, call, captured[bottom], self.top_k)
            results.update(dict.fromkeys(tasks, hidden))
        return results


def _top_of_stack(stack: nn.Module, bottom: int) -> nn.Module:
    """A view of the layer stack that runs its layers above `bottom` only (the same modules)."""
    view = copy.copy(stack)
    view._modules = {**stack._modules, "layer": nn.ModuleList(list(stack.layer)[bottom:])}
    return view


def _family_targets(encoder: PreTrainedModel) -> list[str]:
    model_type = encoder.config.model_type
    if model_type not in FAMILY_TARGETS:
        raise SharingError(f"sharing.adapters: no default target modules for {model_type!r} (defaults for: "
                           f"{', '.join(sorted(FAMILY_TARGETS))}); name them in "
                           "sharing.adapters.target_modules")
    return FAMILY_TARGETS[model_type]


def _check_targets(encoder: PreTrainedModel, targets: list[str]) -> None:
    """Every target names linear modules of this encoder (peft's own error lists none of them)."""
    linear = {name.rsplit(".", 1)[-1] for name, module in encoder.named_modules()
              if isinstance(module, nn.Linear)}
    unknown = [target for target in targets if target not in linear]
    if unknown:
        raise SharingError(f"sharing.adapters.target_modules: {', '.join(unknown)} is not a linear module of "
                           f"{type(encoder).__name__}; its linear modules: {', '.join(sorted(linear))}")
