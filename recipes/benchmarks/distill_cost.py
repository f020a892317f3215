"""What distillation costs beside a plain multi-task run: the teachers' caching pass, the cache's
size on disk, and a training step with teacher outputs against the same step without.

    python -m recipes.benchmarks.distill_cost --data-dir ../shared/data

One teacher checkpoint of every task (the encoder itself with fresh heads: a teacher's size, not its
quality, decides the cost) writes its outputs over each task's training examples once; then the
same model trains the same batches with and without them, the two kinds of step taking turns, so a
slow phase of a noisy machine hits both alike. Prints the caching pass's seconds and examples per
second, the cache files' megabytes, and each kind of step's median seconds and their ratio.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from mtl_nlp import MultiTaskModel, load_tokenizer, prepare_task_data, resolve_tasks
from mtl_nlp.common.precision import resolve_mixed_precision
from mtl_nlp.config import DEFAULT_MODEL
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.distill.teacher_outputs import attach_teacher_outputs
from mtl_nlp.training.optim import build_optimizer, build_scheduler
from mtl_nlp.training.setup import head_configs
from mtl_nlp.training.step import StepRunner
from mtl_nlp.training.teacher_annealing import TeacherAnnealing
from mtl_nlp.training.weighting import EqualWeighting

from .machine import describe_machine


def measure(args: argparse.Namespace, work: Path) -> dict:
    """The caching pass, the cache's size and the median seconds of both kinds of step."""
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              mixed_precision=resolve_mixed_precision(args.mixed_precision))
    tokenizer = load_tokenizer(args.model)
    specs = resolve_tasks(args.tasks)

    def prepare() -> dict:
        return prepare_task_data(specs, tokenizer, 128, data_dir=args.data_dir, cache_dir=str(work / "cache"),
                                 max_train_examples=args.examples, max_eval_examples=10)

    plain, distilled = prepare(), prepare()
    teacher = work / "teacher"
    MultiTaskModel.from_encoder(args.model, head_configs(plain)).save_pretrained(
        teacher, tokenizer, extra={"max_length": 128})
    started = time.perf_counter()
    attach_teacher_outputs(distilled, dict.fromkeys(distilled, str(teacher)), tokenizer, 128, 64,
                           accelerator.device, accelerator.mixed_precision)
    caching = time.perf_counter() - started
    examples = sum(len(data.splits["train"]) for data in distilled.values())
    cache_bytes = sum(path.stat().st_size for path in (work / "cache").rglob("teacher-outputs-*.arrow"))

    def batches(tasks: dict) -> list:
        loader = MultiTaskLoader(tasks, tokenizer, batch_size=args.batch_size, strategy="temperature", seed=1)
        return list(itertools.islice(iter(loader), args.steps + args.warmup))

    plain_batches, distilled_batches = batches(plain), batches(distilled)
    assert [task for task, _ in plain_batches] == [task for task, _ in distilled_batches]
    model = MultiTaskModel.from_encoder(args.model, head_configs(plain))
    optimizer = build_optimizer(model, 1e-5, 0.01)
    scheduler = build_scheduler(optimizer, 10**6, 0.0)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    weighting = EqualWeighting(list(plain))
    annealing = TeacherAnnealing("linear", 0.5, 1.0, total_steps=args.steps + args.warmup)
    runners = {
        "plain": StepRunner(accelerator, model, optimizer, scheduler, weighting, 1, 1, 1.0),
        "distilled": StepRunner(accelerator, model, optimizer, scheduler, weighting, 1, 1, 1.0,
                                annealing=annealing),
    }
    steps = {"plain": plain_batches, "distilled": distilled_batches}
    seconds: dict[str, list[float]] = {kind: [] for kind in runners}
    model.train()
    for step in range(args.warmup + args.steps):
        for kind, runner in runners.items():
            started = time.perf_counter()
            runner.run(iter([steps[kind][step]]), step + 1)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if step >= args.warmup:
                seconds[kind].append(time.perf_counter() - started)
    medians = {kind: statistics.median(values) for kind, values in seconds.items()}
    return {
        "tasks": list(plain), "training_examples": examples, "batch_size": args.batch_size,
        "precision": accelerator.mixed_precision, "steps_per_kind": args.steps,
        "caching_seconds": round(caching, 1), "caching_examples_per_second": round(examples / caching, 1),
        "cache_megabytes": round(cache_bytes / 2**20, 2),
        "median_step_seconds": {kind: round(value, 4) for kind, value in medians.items()},
        "distilled_to_plain": round(medians["distilled"] / medians["plain"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="read the built-in tasks from this folder")
    parser.add_argument("--tasks", nargs="*", default=["conll2003", "sst2", "ag_news"])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--examples", type=int, default=2000, help="training examples per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mixed-precision", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        print(json.dumps({"machine": describe_machine(), **measure(args, Path(work))}, indent=2))


if __name__ == "__main__":
    main()
