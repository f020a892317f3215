"""Export one task of an adapter checkpoint (sharing.adapters) as peft itself saves and loads it.

The task's standard transformers model (base encoder + the task's head, built as `export` builds
it) is wrapped by peft with the task's LoRA settings and its head in `modules_to_save`, the task's
adapter weights are loaded into it, and peft writes the folder: adapter_config.json (naming the
base) and adapter_model.safetensors. `merge` writes a plain transformers model instead, the
adapter merged into the base weights.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import Tensor
from transformers import PreTrainedModel

from mtl_nlp.modeling.heads import HeadConfig
from mtl_nlp.modeling.model import MultiTaskModel

PEFT_PREFIX = "base_model.model."  # where PeftModel keeps the wrapped model's keys


def save_task_adapter(
    standard: PreTrainedModel, model: MultiTaskModel, head: HeadConfig, head_state: dict[str, Tensor],
    output_dir: Path, base: str, merge: bool,
) -> None:
    """Write `head`'s adapter on `standard` (holding the base and the head) to `output_dir`."""
    from peft import get_peft_model
    from peft.utils.save_and_load import get_peft_model_state_dict, set_peft_model_state_dict

    adapters = model.sharing.adapters
    name = model.sharing.adapter_of[head.name]
    config = copy.deepcopy(adapters.peft_model.peft_config[name])
    config.inference_mode = False
    # the head's modules (classifier, and a pooler head's dense layer) travel with the adapter
    config.modules_to_save = sorted({key.rsplit(".", 1)[0] for key in head_state})
    wrapped = get_peft_model(standard, config)
    wrapped.peft_config["default"].base_model_name_or_path = base  # peft would name `standard`'s source
    weights = get_peft_model_state_dict(adapters.peft_model, adapter_name=name)
    prefix = standard.base_model_prefix
    renamed = {f"{PEFT_PREFIX}{prefix}.{key.removeprefix(PEFT_PREFIX)}": tensor
               for key, tensor in weights.items()}
    # the wrapped model's own adapter state holds the head (modules_to_save, copied from `standard`)
    own = get_peft_model_state_dict(wrapped)
    missing = sorted(key for key in own if ".lora_" in key and key not in renamed)
    if missing:
        raise RuntimeError(f"export of {head.name!r}: no trained weights for {missing[:3]}")
    result = set_peft_model_state_dict(wrapped, {**own, **renamed})
    if result.unexpected_keys:  # a mapping bug, never a user error: fail before writing anything
        raise RuntimeError(f"export of {head.name!r}: unexpected adapter keys {result.unexpected_keys[:3]}")
    wrapped.eval()
    if merge:
        wrapped.merge_and_unload().save_pretrained(output_dir, safe_serialization=True)
    else:
        wrapped.save_pretrained(str(output_dir))
