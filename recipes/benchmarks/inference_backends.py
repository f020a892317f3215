"""Predictor throughput by engine against three transformers pipelines and the bare encoder, on
the same texts, and (with --scores) each engine's test scores.

    python -m recipes.benchmarks.inference_backends CHECKPOINT --data-dir ../shared/data \\
        [--single DIR DIR DIR] [--scores] [--limit 2000] [--rounds 3]
    python -m recipes.benchmarks.inference_backends CHECKPOINT --texts TEXTS.tsv

The texts are the first `--limit` test sentences of CoNLL-2003 and SST-2 in equal shares
(`--data-dir`), or the first column of a TSV file with a header (`--texts`). Each round runs, in
turn: the bare encoder in fp32 and bf16 (tokenize, batch by token count and run AutoModel's
forward, no heads: the floor the Predictor's overhead is measured against); every task of the
checkpoint exported to transformers (`export_task`) and run as its own `transformers.pipeline`
in fp32, one after another (batch 32; tagging with aggregation_strategy "first"); the
single-task checkpoints of `--single` as Predictors one after another (bf16); and the
multi-task Predictor on every engine (torch fp32, bf16 autocast, torch.compile bf16, ONNX
Runtime fp32 and int8 when installed), all its tasks answering every text, batch 64. The table
gives the median texts/s over the rounds, the speed-up over the three fp32 pipelines, and for
every task the share of texts whose answer (label, or entity list) equals the torch fp32
Predictor's. `--scores` adds each engine's test score per task on the whole test sets.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer, pipeline

from mtl_nlp.inference import Predictor
from mtl_nlp.publish.export import export_task
from mtl_nlp.registry import get_task

from .answer_scores import gold_examples, score_answers
from .inference_timing import benchmark_texts
from .machine import describe_machine

BATCH = 64
PIPELINE_BATCH = 32
PIPELINES = "three fp32 pipelines"
REFERENCE = "Predictor torch fp32"


def read_texts(path: Path, limit: int) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        return [row[0] for row, _ in zip(rows, range(limit))]


def engines() -> dict[str, dict[str, str]]:
    """The multi-task Predictor's engines: {name: Predictor options}."""
    chosen = {
        REFERENCE: {"mixed_precision": "no"},
        "Predictor torch bf16": {"mixed_precision": "bf16"},
        "Predictor torch-compile bf16": {"mixed_precision": "bf16", "backend": "torch-compile"},
    }
    if all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnxscript")):
        chosen["Predictor ONNX fp32"] = {"backend": "onnx"}
        chosen["Predictor ONNX int8"] = {"backend": "onnx-int8"}
    return chosen


@torch.no_grad()
def bare_encoder(directory: str, texts: list[str], max_length: int, bf16: bool) -> float:
    """Seconds for tokenizer + encoder forward over the texts, batched as the Predictor batches:
    one tokenizer call, batches of similar token counts, each padded to its longest row."""
    tokenizer = AutoTokenizer.from_pretrained(directory)
    encoder = AutoModel.from_pretrained(directory).eval()
    pad = tokenizer.pad_token_id or 0
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        encoder(**tokenizer(texts[:BATCH], padding=True, return_tensors="pt"))  # warm-up, as the others
        started = time.perf_counter()
        ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        order = sorted(range(len(ids)), key=lambda row: len(ids[row]))
        for begin in range(0, len(order), BATCH):
            rows = [ids[row] for row in order[begin : begin + BATCH]]
            width = max(len(row) for row in rows)
            encoder(input_ids=torch.tensor([row + [pad] * (width - len(row)) for row in rows]),
                    attention_mask=torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows]))
    return time.perf_counter() - started


def timed_answers(predictor: Predictor, texts: list[str]) -> tuple[float, list[dict]]:
    predictor.predict(texts[:BATCH])  # warm-up
    started = time.perf_counter()
    answers = predictor.predict(texts)
    return time.perf_counter() - started, answers


def task_pipelines(checkpoint: str, predictor: Predictor, folder: Path) -> list[Callable[[list[str]], Any]]:
    """One fp32 transformers pipeline per task of the checkpoint, each built from its export."""
    runs = []
    for task in predictor.tasks:
        exported = export_task(checkpoint, task, folder / task)
        if predictor.model.head_configs[task].type == "token_classification":
            tagger = pipeline("token-classification", model=str(exported), device=-1,
                              aggregation_strategy="first")
            runs.append(lambda texts, run=tagger: run(texts, batch_size=PIPELINE_BATCH))
        else:
            classifier = pipeline("text-classification", model=str(exported), device=-1)
            runs.append(lambda texts, run=classifier: run(
                texts, batch_size=PIPELINE_BATCH, truncation=True, max_length=predictor.max_length))
    return runs


def seconds_of(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def agreement(answers: list[dict], reference: list[dict]) -> dict[str, float]:
    """{task: share of texts whose answer equals the reference's (label or entity spans)}."""
    shares = {}
    for task in reference[0]:
        def key(answer):
            if isinstance(answer, list):
                return [(e["label"], e["start"], e["end"]) for e in answer]
            return answer.get("label", answer.get("labels", answer.get("value")))
        same = sum(key(a[task]) == key(r[task]) for a, r in zip(answers, reference))
        shares[task] = same / len(reference)
    return shares


def engine_scores(
    predictors: dict[str, Predictor], data_dir: str, limit: int | None = None
) -> dict[str, dict[str, float]]:
    """{engine: {task: test score of its answers}} on each task's test set (its first `limit`)."""
    scores: dict[str, dict[str, float]] = {name: {} for name in predictors}
    reference = predictors[REFERENCE]
    for task in reference.tasks:
        head = reference.model.head_configs[task]
        texts, gold = gold_examples(get_task(task), data_dir, head.labels)
        texts, gold = texts[:limit], gold[:limit]
        for name, predictor in predictors.items():
            answers = [answer[task] for answer in predictor.predict(texts, tasks=[task])]
            scores[name][task] = score_answers(head.type, answers, gold)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="CoNLL-2003 and SST-2 test sentences from this data folder")
    source.add_argument("--texts", type=Path, help="a TSV file whose first column holds the texts")
    parser.add_argument("--single", nargs="*", default=[], help="single-task checkpoints to compare")
    parser.add_argument("--scores", action="store_true", help="test scores per engine (needs --data-dir)")
    parser.add_argument("--score-limit", type=int, help="score the first N test examples (default: all)")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = (read_texts(args.texts, args.limit) if args.texts
             else benchmark_texts(["conll2003", "sst2"], args.data_dir, args.limit))
    predictors = {name: Predictor.from_pretrained(args.checkpoint, batch_size=BATCH, **options)
                  for name, options in engines().items()}
    singles = [Predictor.from_pretrained(directory, batch_size=BATCH, mixed_precision="bf16")
               for directory in args.single]
    max_length = predictors[REFERENCE].max_length
    exports = tempfile.TemporaryDirectory(prefix="mtl-nlp-exports-")
    pipelines = task_pipelines(args.checkpoint, predictors[REFERENCE], Path(exports.name))
    for run in pipelines:
        run(texts[:PIPELINE_BATCH])  # warm-up
    seconds: dict[str, list[float]] = {PIPELINES: [], "bare encoder fp32": [], "bare encoder bf16": []}
    if singles:
        seconds[f"{len(singles)} single-task Predictors bf16"] = []
    seconds.update({name: [] for name in predictors})
    predictors["Predictor torch-compile bf16"].predict(texts)  # compiled here, not in the timings
    answers = {}
    for _ in range(args.rounds):
        seconds[PIPELINES].append(seconds_of(lambda: [run(texts) for run in pipelines]))
        for bf16 in (False, True):
            name = f"bare encoder {'bf16' if bf16 else 'fp32'}"
            seconds[name].append(bare_encoder(args.checkpoint, texts, max_length, bf16))
        if singles:
            seconds[f"{len(singles)} single-task Predictors bf16"].append(
                seconds_of(lambda: [single.predict(texts) for single in singles]))
        for name, predictor in predictors.items():
            elapsed, answers[name] = timed_answers(predictor, texts)
            seconds[name].append(elapsed)
    scores = {}
    if args.scores and args.data_dir:
        scores = engine_scores(predictors, args.data_dir, args.score_limit)
    print(describe_machine())
    print(f"{len(texts)} texts, batch {BATCH} (pipelines {PIPELINE_BATCH}), max_length {max_length}, "
          f"{args.rounds} rounds, median")
    print(format_table(seconds, answers, scores, len(texts)))


def format_table(seconds: dict[str, list[float]], answers: dict[str, list[dict]],
                 scores: dict[str, dict[str, float]], count: int) -> str:
    """The markdown table: texts/s, speed-up over the pipelines, agreement, test scores."""
    tasks = list(next(iter(scores.values()))) if scores else []
    header = ["engine", "seconds", "texts/s", "vs three fp32 pipelines", "same answer as torch fp32",
              *[f"{task} test" for task in tasks]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = statistics.median(seconds[PIPELINES])
    for name, values in seconds.items():
        median = statistics.median(values)
        same = "-" if name not in answers else ", ".join(
            f"{task} {share:.4f}" for task, share in agreement(answers[name], answers[REFERENCE]).items())
        row = [name, " / ".join(f"{value:.2f}" for value in values), f"{count / median:,.0f}",
               f"{base / median:.2f}x", same, *[f"{scores[name][task]:.4f}" if name in scores else "-"
                                                for task in tasks]]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
