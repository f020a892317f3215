"""Inference timing: one multi-task Predictor pass vs one Predictor per single-task model."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from mtl_nlp.data.loading import load_task_splits
from mtl_nlp.inference import Predictor
from mtl_nlp.registry import get_task


def benchmark_texts(tasks: list[str], data_dir: str, count: int) -> list[str]:
    """`count` raw texts drawn in equal shares from the tasks' test splits (first rows)."""
    share = -(-count // len(tasks))
    texts: list[str] = []
    for name in tasks:
        spec = get_task(name)
        split = load_task_splits(spec, data_dir=data_dir)
        rows = split["test" if "test" in split else "validation"]
        rows = rows.select(range(min(share, len(rows))))
        if spec.type == "token_classification":
            texts += [" ".join(words) for words in rows[spec.tokens_column]]
        else:
            texts += list(rows[spec.text_column])
    return texts[:count]


def time_call(function: Any, repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls of `function()`, after one warm-up call."""
    function()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def compare_inference(
    multitask_dir: str | Path, single_task_dirs: list[str | Path], texts: list[str],
    repeats: int = 3, batch_size: int = 64,
) -> dict[str, Any]:
    """Sentences/s of the multi-task Predictor (all tasks, one encoder pass) and of the
    single-task Predictors run one after the other over the same texts; medians of `repeats`."""
    multitask = Predictor.from_pretrained(multitask_dir, batch_size=batch_size)
    singles = [Predictor.from_pretrained(d, batch_size=batch_size) for d in single_task_dirs]
    multi_seconds = time_call(lambda: multitask.predict(texts), repeats)
    single_seconds = time_call(lambda: [p.predict(texts) for p in singles], repeats)
    multi, single = statistics.median(multi_seconds), statistics.median(single_seconds)
    return {
        "sentences": len(texts),
        "repeats": repeats,
        "multitask_sentences_per_second": len(texts) / multi,
        "single_task_sentences_per_second": len(texts) / single,
        "speedup": single / multi,
        "multitask_seconds": multi_seconds,
        "single_task_seconds": single_seconds,
    }
