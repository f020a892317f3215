"""Modeling: the shared encoder, task heads and the checkpoint format."""

from mtl_nlp.modeling.encoder import (
    ModelLoadError,
    load_encoder,
    load_tokenizer,
    resolve_model_path,
)
from mtl_nlp.modeling.heads import HeadConfig, build_head
from mtl_nlp.modeling.model import MultiTaskModel, read_checkpoint_config

__all__ = [
    "HeadConfig",
    "ModelLoadError",
    "MultiTaskModel",
    "build_head",
    "load_encoder",
    "load_tokenizer",
    "read_checkpoint_config",
    "resolve_model_path",
]
