"""Predictor speed on a question task (extractive QA or multiple choice) against the plain
transformers model the task exports to, on the same test questions.

    python -m recipes.benchmarks.question_inference CHECKPOINT --task squad --data-dir ../shared/data
    python -m recipes.benchmarks.question_inference CHECKPOINT --task commonsense_qa --data-dir ../shared/data

Each round runs, in turn: the task exported with `export_task` as `AutoModelForQuestionAnswering`
(the (question, context) windows transformers' run_qa builds, fp32, batches of 32 windows, each
question's best span by the same n-best decoding) or `AutoModelForMultipleChoice` (a question's
options as its rows, fp32, batches of 32 questions, the arg max); then the Predictor on the same
dict inputs (`{"question", "context"}` / `{"question", "choices"}`) in fp32 and with bf16 autocast.
transformers 5 has no question-answering pipeline, so the plain model with run_qa's decoding is
what a user would otherwise write. Prints questions/s (median over `--rounds`), the speed-up over
the plain model, and the share of questions whose answer equals the plain model's.

With `--serve`, `mtl-nlp serve CHECKPOINT` then runs on 127.0.0.1 and gets the same questions, one a
request to /predict, at each `--concurrency`: questions/s and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoTokenizer

from mtl_nlp.common.answer_spans import WindowScores, best_answers
from mtl_nlp.common.tokenizing import option_pairs
from mtl_nlp.data.choices import option_texts
from mtl_nlp.data.loading import load_task_splits
from mtl_nlp.inference import Predictor
from mtl_nlp.publish.export import export_task
from mtl_nlp.registry import get_task

from .machine import describe_machine
from .serve_load import send_all, start

PLAIN_BATCH = 32
PLAIN = "plain transformers model fp32"


def question_inputs(task: str, data_dir: str, limit: int) -> list[dict[str, Any]]:
    """The first `limit` test questions of `task` as Predictor dict inputs."""
    spec = get_task(task)
    splits = load_task_splits(spec, data_dir=data_dir)
    rows = splits["test" if "test" in splits else "validation"]
    rows = rows.select(range(min(limit, len(rows))))
    if spec.type == "extractive_qa":
        return [{"question": row[spec.question_column], "context": row[spec.context_column]} for row in rows]
    return [{"question": row[spec.question_column],
             "choices": option_texts(row[spec.choices_column], task, f"row {index}")[0],
             **({"context": row[spec.context_column]} if spec.context_column else {})}
            for index, row in enumerate(rows)]


def plain_answerer(folder: str, kind: str, max_length: int, stride: int) -> Callable[[list[dict]], list]:
    """The exported model answering dict inputs as a user would with transformers alone."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    auto = AutoModelForQuestionAnswering if kind == "extractive_qa" else AutoModelForMultipleChoice
    model = auto.from_pretrained(folder).eval()

    @torch.inference_mode()
    def answer_questions(items: list[dict]) -> list[str]:
        questions = [item["question"].lstrip() for item in items]
        encoded = tokenizer(questions, [item["context"] for item in items],
                            truncation="only_second", max_length=max_length, stride=stride, padding=True,
                            return_overflowing_tokens=True, return_offsets_mapping=True, return_tensors="pt")
        owners = encoded.pop("overflow_to_sample_mapping").tolist()
        offsets = encoded.pop("offset_mapping").tolist()
        starts, ends = [], []
        for begin in range(0, len(owners), PLAIN_BATCH):
            output = model(**{key: value[begin:begin + PLAIN_BATCH] for key, value in encoded.items()})
            starts += output.start_logits.tolist()
            ends += output.end_logits.tolist()
        windows: list[list[WindowScores]] = [[] for _ in items]
        for window, owner in enumerate(owners):
            inside = [tuple(span) if part == 1 else None
                      for part, span in zip(encoded.sequence_ids(window), offsets[window])]
            windows[owner].append(WindowScores(starts[window], ends[window], inside))
        return [(found[0].text if (found := best_answers(scored, item["context"])) else "")
                for scored, item in zip(windows, items)]

    @torch.inference_mode()
    def choose(items: list[dict]) -> list[str]:
        chosen = []
        for begin in range(0, len(items), PLAIN_BATCH):
            batch = items[begin:begin + PLAIN_BATCH]
            most = max(len(item["choices"]) for item in batch)
            # options padded to the batch's most with copies of the last, which the arg max skips
            padded = [[*item["choices"], *[item["choices"][-1]] * (most - len(item["choices"]))]
                      for item in batch]
            pairs = [option_pairs(item["question"], options, item.get("context"))
                     for item, options in zip(batch, padded)]
            encoded = tokenizer([text for first, _ in pairs for text in first],
                                [text for _, second in pairs for text in second],
                                truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            logits = model(**{key: value.view(len(batch), most, -1) for key, value in encoded.items()}).logits
            for row, item in enumerate(batch):
                count = len(item["choices"])
                chosen.append(item["choices"][int(logits[row, :count].argmax())])
        return chosen

    return answer_questions if kind == "extractive_qa" else choose


def compare(args: argparse.Namespace, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Questions/s of the plain model and of the Predictor in fp32 and bf16, and their agreement."""
    kind = get_task(args.task).type
    predictors = {precision: Predictor.from_pretrained(args.checkpoint, batch_size=args.batch_size,
                                                       mixed_precision=precision)
                  for precision in ("no", "bf16")}
    reference = predictors["no"]
    key = "answer" if kind == "extractive_qa" else "label"
    runners: dict[str, Callable[[], list]] = {}
    with tempfile.TemporaryDirectory() as folder:
        export_task(args.checkpoint, args.task, folder, overwrite=True)
        plain = plain_answerer(folder, kind, reference.max_length, reference.stride)
        runners[PLAIN] = lambda: plain(items)
        for precision, predictor in predictors.items():
            runners[f"Predictor {'fp32' if precision == 'no' else precision}"] = (
                lambda p=predictor: [answer[args.task][key] for answer in p.predict(items, tasks=args.task)])
        answers = {name: run() for name, run in runners.items()}
        seconds: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds):  # the arms take turns (each warmed up above), so a slow phase hits all
            for name, run in runners.items():
                started = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - started)
    rates = {name: len(items) / statistics.median(values) for name, values in seconds.items()}
    plain_rate, plain_answers = rates[PLAIN], answers[PLAIN]
    return {"task": args.task, "questions": len(items), "rounds": args.rounds,
            "questions_per_second": {name: round(rate, 1) for name, rate in rates.items()},
            "speedup": {name: round(rate / plain_rate, 2) for name, rate in rates.items()},
            "same_answer_as_plain": {name: round(sum(map(str.__eq__, found, plain_answers)) / len(items), 4)
                                     for name, found in answers.items()}}


def served(args: argparse.Namespace, items: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Questions/s and latency of `mtl-nlp serve` at each concurrency, one question a request."""
    command = [sys.executable, "-m", "mtl_nlp.cli", "serve", args.checkpoint, "--port", str(args.port),
               "--device", "cpu"]
    url = f"http://127.0.0.1:{args.port}/predict"
    server = start(command, url.replace("/predict", "/ready"), threads=torch.get_num_threads(), cores=None)
    try:
        found = {}
        for concurrency in args.concurrency:
            asyncio.run(send_all([url], items[:32], concurrency))  # warm up
            found[f"concurrency {concurrency}"] = {key: round(value, 1) for key, value in
                                                   asyncio.run(send_all([url], items, concurrency)).items()}
        return found
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--limit", type=int, default=1000, help="test questions")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="the Predictor's batch")
    parser.add_argument("--serve", action="store_true", help="then time `mtl-nlp serve` on the questions")
    parser.add_argument("--concurrency", nargs="*", type=int, default=[1, 8])
    parser.add_argument("--port", type=int, default=8700)
    args = parser.parse_args()
    items = question_inputs(args.task, args.data_dir, args.limit)
    figures = compare(args, items)
    if args.serve:
        figures["mtl-nlp serve"] = served(args, items)
    print(json.dumps({"machine": describe_machine(), **figures}, indent=2))


if __name__ == "__main__":
    main()
