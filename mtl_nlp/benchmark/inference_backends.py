"""Predictor throughput by engine, against the bare encoder, on the same texts.

    python -m mtl_nlp.benchmark.inference_backends CHECKPOINT TEXTS.tsv [--limit 2000] [--rounds 3]

TEXTS is a TSV file with a header whose first column holds the texts (SST-2's files work). Each
round runs, in turn: the bare encoder (tokenize the length-sorted batches and run AutoModel's
forward, no heads: the floor the Predictor's overhead is measured against), then the Predictor
on torch fp32, torch bf16 autocast, ONNX Runtime fp32 and ONNX Runtime int8, all tasks of the
checkpoint answering every text, batch 64. The table gives the median texts/s over the rounds,
the ratio to the torch fp32 Predictor, and for every task the share of texts whose answer (label,
or entity list) equals the torch fp32 Predictor's.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from mtl_nlp.inference import Predictor

BATCH = 64


def read_texts(path: Path, limit: int) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        return [row[0] for row, _ in zip(rows, range(limit))]


@torch.no_grad()
def bare_encoder(directory: str, texts: list[str], max_length: int) -> float:
    """Seconds for tokenizer + encoder forward over the texts in length-sorted batches."""
    tokenizer = AutoTokenizer.from_pretrained(directory)
    encoder = AutoModel.from_pretrained(directory).eval()
    ordered = sorted(texts, key=len)
    encoder(**tokenizer(ordered[:BATCH], padding=True, return_tensors="pt"))  # warm-up, as the others
    started = time.perf_counter()
    for begin in range(0, len(ordered), BATCH):
        inputs = tokenizer(ordered[begin : begin + BATCH], truncation=True, max_length=max_length,
                           padding=True, return_tensors="pt")
        encoder(**inputs)
    return time.perf_counter() - started


def timed_answers(predictor: Predictor, texts: list[str]) -> tuple[float, list[dict]]:
    predictor.predict(texts[:BATCH])  # warm-up
    started = time.perf_counter()
    answers = predictor.predict(texts)
    return time.perf_counter() - started, answers


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("texts", type=Path)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = read_texts(args.texts, args.limit)
    engines = {
        "torch fp32": {"mixed_precision": "no"},
        "torch bf16": {"mixed_precision": "bf16"},
        "onnx fp32": {"backend": "onnx"},
        "onnx int8": {"backend": "onnx-int8"},
    }
    predictors = {name: Predictor.from_pretrained(args.checkpoint, batch_size=BATCH, **options)
                  for name, options in engines.items()}
    max_length = predictors["torch fp32"].max_length
    seconds: dict[str, list[float]] = {name: [] for name in ["bare encoder fp32", *engines]}
    answers = {}
    for _ in range(args.rounds):
        seconds["bare encoder fp32"].append(bare_encoder(args.checkpoint, texts, max_length))
        for name, predictor in predictors.items():
            elapsed, answers[name] = timed_answers(predictor, texts)
            seconds[name].append(elapsed)
    reference = answers["torch fp32"]
    base = statistics.median(seconds["torch fp32"])
    print(f"{len(texts)} texts, batch {BATCH}, max_length {max_length}, {args.rounds} rounds, median")
    print("| engine | texts/s | vs torch fp32 Predictor | same answer as torch fp32 |")
    print("|---|---:|---:|---|")
    for name, values in seconds.items():
        median = statistics.median(values)
        same = "-" if name not in answers else ", ".join(
            f"{task} {share:.4f}" for task, share in agreement(answers[name], reference).items())
        print(f"| {name} | {len(texts) / median:,.0f} | {base / median:.2f}x | {same} |")


if __name__ == "__main__":
    main()
