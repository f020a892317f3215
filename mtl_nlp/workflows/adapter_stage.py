"""The adapter second stage (`mtl-nlp finetune DIR --adapters`): each task's LoRA adapter and head
trained on the frozen multi-task encoder, assembled into one checkpoint that holds that encoder
once and an adapter per task, instead of a whole model per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mtl_nlp.common.run_files import FINETUNED_DIR
from mtl_nlp.config import ConfigError
from mtl_nlp.modeling.adapters import AdapterShape
from mtl_nlp.modeling.model import MultiTaskModel, read_checkpoint_config
from mtl_nlp.modeling.sharing import SharingShape

# what the stage sets: adapters on a base that stays the multi-task encoder
STAGE_KEYS = ("sharing.adapters.method", "sharing.adapters.train_base", "sharing.private_layers")


def adapter_stage_config(run_config: dict[str, Any], directory: Path) -> dict[str, Any]:
    """The run config of each task's adapter run: the multi-task run's, with LoRA adapters (its
    sharing.adapters settings, else the defaults) on a frozen base."""
    sharing = dict(run_config.get("sharing") or {})
    if sharing.get("private_layers"):
        raise ConfigError(f"{directory} has private layers: its second stage of private layers only "
                          "(--private-layers-only) keeps one shared pass already")
    if (sharing.get("adapters") or {}).get("method", "none") != "none":
        raise ConfigError(f"{directory} has adapters already: fine-tune its tasks with `mtl-nlp train` "
                          "from it (init_from), or run the adapter stage on a checkpoint without them")
    sharing["adapters"] = {**(sharing.get("adapters") or {}), "method": "lora", "train_base": False}
    return {**run_config, "sharing": sharing}


def assemble_adapters(directory: Path, runs: list[str], output: Path) -> Path:
    """One checkpoint: `directory`'s multi-task encoder as the base, with the adapter and heads of
    each of `runs` (DIR/finetuned/<run>/); the other tasks keep their heads and a LoRA adapter as
    it starts (a no-op), so they answer as the multi-task model does. Every run must have kept the
    base as it was, which a frozen base guarantees; one that did not is refused by name."""
    from transformers import AutoTokenizer

    saved = MultiTaskModel.from_pretrained(directory)
    base = {key: tensor.clone() for key, tensor in saved.encoder.state_dict().items()}
    trained = {run: MultiTaskModel.from_pretrained(directory / FINETUNED_DIR / run) for run in runs}
    settings = next(iter(trained.values())).sharing.adapters.shape.to_dict()
    shape = SharingShape(**{**saved.sharing.shape.to_dict(),
                            "adapters": AdapterShape(**{**settings, "names": [], "base": None})})
    heads = list(saved.head_configs.values())
    model = MultiTaskModel(saved.encoder, heads, shape, pretrained=False)
    model.heads.load_state_dict(saved.heads.state_dict())
    for run, tuned in trained.items():
        for key, tensor in tuned.sharing.adapters.base_state_dict().items():
            if not torch.equal(tensor, base[key]):
                raise ConfigError(f"{directory / FINETUNED_DIR / run} changed the base encoder ({key}): only "
                                  "a frozen base assembles into one checkpoint")
        model.sharing.adapters.copy_adapter(tuned.sharing.adapters, run)
        for name, head in tuned.heads.items():
            model.heads[name].load_state_dict(head.state_dict())
    config = read_checkpoint_config(directory)
    extra = {key: value for key, value in config.items() if key not in model.checkpoint_config()}
    model.save_pretrained(output, tokenizer=AutoTokenizer.from_pretrained(str(directory)), extra=extra)
    return output
