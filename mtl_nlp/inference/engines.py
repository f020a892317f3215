"""The engines that run a Predictor's one-pass forward for every task: the model itself
("torch"), its forward compiled by torch.compile ("torch-compile", dynamic shapes: compiled once on
the first batches), or an ONNX Runtime export of it ("onnx", "onnx-int8": fp32 or int8 weights,
see onnx_engine.py), with the precision the torch engines run in."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtl_nlp.common.choices import BACKENDS, ONNX_BACKENDS
from mtl_nlp.inference.errors import BackendError
from mtl_nlp.modeling.model import MultiTaskModel

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

Engine = Callable[[dict[str, Tensor], list[str]], dict[str, Tensor]]  # (inputs, tasks) -> {task: logits}


def build_engine(
    model: MultiTaskModel, tokenizer: Any, backend: str, device: torch.device, precision: str,
    checkpoint: str | Path | None = None,
) -> Engine:
    """The engine `backend` for `model` (in eval mode on `device`). The torch engines run under
    autocast in `precision` ("bf16"/"fp16") with the linear weights stored in it; ONNX engines
    ignore `precision` and cache their export in `checkpoint`."""
    if backend not in BACKENDS:
        raise BackendError(f"backend {backend!r} is not one of: {', '.join(BACKENDS)}")
    if backend in ONNX_BACKENDS:
        from mtl_nlp.inference.onnx_engine import onnx_runner

        return onnx_runner(model, tokenizer, backend, device, checkpoint)
    if precision in AUTOCAST_DTYPES:
        store_linear_weights(model, AUTOCAST_DTYPES[precision])
    forward_all = model.forward_all
    if backend == "torch-compile":
        forward_all = torch.compile(model.forward_all, dynamic=True)

    def run(inputs: dict[str, Tensor], tasks: list[str]) -> dict[str, Tensor]:
        with autocast(device, precision):
            return forward_all(**inputs, tasks=tasks)

    return run


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """torch.autocast for bf16/fp16, nothing for fp32."""
    if precision in AUTOCAST_DTYPES:
        return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()


def store_linear_weights(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Keep every linear layer's weight and bias in `dtype`, the precision autocast runs them in.

    Autocast casts float32 weights to bf16/fp16 on every use and caches the casts only until its
    context closes, so a Predictor entering it once per batch re-cast all 22M weights of the
    default encoder each batch (about a fifth of a bf16 pass over short texts). Cast once, the
    answers are the same: autocast's cast of a weight already in `dtype` is a no-op. Layer norms
    and embeddings stay float32, as autocast leaves them.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(dtype)
