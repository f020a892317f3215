"""ONNX Runtime as the Predictor's engine: the model's one-pass forward for every task exported
once to ONNX (optionally with int8 weights), cached beside the checkpoint, run on CPU or GPU.

`Predictor.from_pretrained(DIR, backend="onnx")` (or "onnx-int8") exports on first use into
DIR/onnx/<key>/ (a temporary folder when DIR is read-only); the key hashes the checkpoint's
mtl_nlp.json, whose manifest holds every weight file's SHA-256, so a new save exports again.
Needs the `onnx` extra: `pip install "mtl-nlp[onnx]"`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtl_nlp.common.choices import ONNX_BACKENDS
from mtl_nlp.common.run_files import CHECKPOINT_CONFIG, ONNX_DIR, ONNX_MANIFEST
from mtl_nlp.inference.errors import BackendError

logger = logging.getLogger(__name__)



class _AllTasks(nn.Module):
    """forward_all as a module with tensor inputs and one output per task, in task order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor,
                token_type_ids: Tensor | None = None) -> tuple[Tensor, ...]:
        tasks = self.model.task_names
        logits = self.model.forward_all(input_ids, attention_mask, token_type_ids, tasks=tasks)
        return tuple(logits[task] for task in tasks)


def export_onnx(model: nn.Module, tokenizer: Any, path: Path) -> Path:
    """Write `model`'s forward for all tasks to ONNX at `path` (batch and length dynamic)."""
    choosing = [name for name, head in model.head_configs.items() if head.type == "multiple_choice"]
    if choosing:
        raise BackendError(f"multiple-choice task(s) {', '.join(choosing)} read [questions, options, length] "
                           "inputs, which the ONNX export (one text per row) does not take: use the torch or "
                           "torch-compile backend, or export the task (mtl-nlp export) to "
                           "AutoModelForMultipleChoice")
    sample = tokenizer(["a short text", "another short text here"], padding=True, return_tensors="pt")
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    model = model.eval().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            _AllTasks(model), tuple(sample[name] for name in names), str(path), dynamo=True,
            input_names=names, output_names=list(model.task_names),
            dynamic_shapes={name: {0: batch, 1: length} for name in names}, verbose=False,
        )
    return path


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization of the weights of `source` (activations stay float)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return target


class OnnxRunner:
    """Runs an exported model: tokenizer outputs in, {task: logits tensor} out."""

    def __init__(self, path: Path, tasks: list[str], device: torch.device) -> None:
        import onnxruntime

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        self.input_names = [item.name for item in self.session.get_inputs()]
        self.tasks = tasks

    def __call__(self, inputs: dict[str, Tensor], tasks: list[str]) -> dict[str, Tensor]:
        feed = {name: inputs[name].cpu().numpy() for name in self.input_names}
        outputs = self.session.run(None, feed)
        by_task = dict(zip(self.tasks, outputs))
        return {task: torch.from_numpy(by_task[task]) for task in tasks}


def onnx_runner(model: nn.Module, tokenizer: Any, backend: str, device: torch.device,
                checkpoint: str | Path | None = None) -> OnnxRunner:
    """The ONNX Runtime engine for `model`, exported (and quantized) once per checkpoint save."""
    if backend not in ONNX_BACKENDS:
        raise BackendError(f"backend {backend!r} is not one of: {', '.join(ONNX_BACKENDS)}")
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise BackendError(
            f"backend {backend!r} needs onnx, onnxscript and onnxruntime: pip install \"mtl-nlp[onnx]\" "
            f"({error.name} is missing)"
        ) from None
    folder = _cache_folder(checkpoint)
    exported = folder / "model.onnx"
    if not exported.is_file():
        logger.info("exporting the model to ONNX at %s", exported)
        export_onnx(model, tokenizer, exported)
    path = exported
    if backend == "onnx-int8":
        path = folder / "model.int8.onnx"
        if not path.is_file():
            quantize_int8(exported, path)
    return OnnxRunner(path, list(model.task_names), device)


def _cache_folder(checkpoint: str | Path | None) -> Path:
    """DIR/onnx/<hash of mtl_nlp.json>, or a temporary folder without a writable checkpoint."""
    if checkpoint is not None:
        config = Path(checkpoint) / CHECKPOINT_CONFIG
        if config.is_file():
            key = hashlib.sha256(config.read_bytes()).hexdigest()[:16]
            folder = Path(checkpoint) / ONNX_DIR / key
            try:
                folder.mkdir(parents=True, exist_ok=True)
                return folder
            except OSError:
                logger.info("checkpoint %s is read-only: exporting ONNX to a temporary folder", checkpoint)
    return Path(tempfile.mkdtemp(prefix="mtl-nlp-onnx-"))


def export_onnx_artifact(checkpoint: str | Path, output_dir: str | Path, int8: bool = False) -> Path:
    """Write every task of `checkpoint` as one standalone ONNX graph for Triton or any ONNX
    Runtime server: OUT/model.onnx (inputs: the tokenizer's ids and masks, batch and length
    dynamic; one output of logits per task), the tokenizer, and OUT/manifest.json naming the
    inputs, each task's output, type and label map, and the max length."""
    from transformers import AutoTokenizer

    from mtl_nlp.inference.errors import BackendError
    from mtl_nlp.modeling.model import MultiTaskModel, read_checkpoint_config

    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise BackendError('export-onnx needs onnx and onnxscript: pip install "mtl-nlp[onnx]"') from None
    output_dir = Path(output_dir)
    model = MultiTaskModel.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    graph = export_onnx(model, tokenizer, output_dir / "model.onnx")
    if int8:
        quantize_int8(graph, output_dir / "model.int8.onnx")
        graph.unlink()
        graph = (output_dir / "model.int8.onnx").rename(output_dir / "model.onnx")
    tokenizer.save_pretrained(output_dir)
    sample = tokenizer(["a text"], return_tensors="pt")
    manifest = {
        "format": "mtl-nlp all-tasks onnx, version 1",
        "model": "model.onnx",
        "weights": "int8" if int8 else "fp32",
        "inputs": [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample],
        "max_length": read_checkpoint_config(checkpoint).get("max_length", tokenizer.model_max_length),
        "outputs": [
            {"task": name, "output": name, "type": head.type, "labels": list(head.labels),
             "id2label": dict(enumerate(head.labels)), "text_pair": head.text_pair,
             "threshold": head.threshold if head.type == "multilabel" else None,
             "logits": "[batch, length, labels]" if head.type == "token_classification" else
                       "[batch]" if head.type == "regression" else "[batch, labels]"}
            for name, head in model.head_configs.items()
        ],
    }
    (output_dir / ONNX_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return output_dir
