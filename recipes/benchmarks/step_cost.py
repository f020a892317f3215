"""What gradient surgery costs: seconds per `all_tasks` step with equal weights, PCGrad and CAGrad.

    python -m recipes.benchmarks.step_cost --data-dir ../shared/data

Same model, same batches (one of each task per step) and same process for every method; the
methods take turns step by step, so a slow phase of a noisy machine hits all of them alike. Prints
the median step time of each method and its ratio to equal weights.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import torch
from accelerate import Accelerator

from mtl_nlp import MultiTaskModel, load_tokenizer, prepare_task_data, resolve_tasks
from mtl_nlp.common.precision import resolve_mixed_precision
from mtl_nlp.config import DEFAULT_MODEL, WeightingConfig
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.training.optim import build_optimizer, build_scheduler
from mtl_nlp.training.setup import head_configs
from mtl_nlp.training.step import StepRunner
from mtl_nlp.training.weighting import build_weighting

from .machine import describe_machine

METHODS = ("equal", "pcgrad", "cagrad")


def time_steps(args: argparse.Namespace) -> dict:
    """Median seconds per all_tasks step for each method, measured in turns."""
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              mixed_precision=resolve_mixed_precision(args.mixed_precision))
    tokenizer = load_tokenizer(args.model)
    specs = resolve_tasks(args.tasks)
    tasks = prepare_task_data(specs, tokenizer, 128, data_dir=args.data_dir, max_train_examples=2000,
                              max_eval_examples=10)
    loader = MultiTaskLoader(tasks, tokenizer, batch_size=args.batch_size, step_mode="all_tasks")
    batches = list(itertools.islice(iter(loader), len(tasks) * (args.steps + args.warmup)))
    model = MultiTaskModel.from_encoder(args.model, head_configs(tasks))
    optimizer = build_optimizer(model, 1e-5, 0.01)
    scheduler = build_scheduler(optimizer, 10**6, 0.0)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    sizes = {name: len(data.splits["train"]) for name, data in tasks.items()}
    runners = {}
    for method in METHODS:
        weighting = build_weighting(WeightingConfig(method=method), sizes, dict.fromkeys(sizes, 1.0))
        runners[method] = StepRunner(accelerator, model, optimizer, scheduler, weighting, grad_accum=1,
                                     batches_per_step=len(tasks), max_grad_norm=1.0)
    model.train()
    seconds: dict[str, list[float]] = {method: [] for method in METHODS}
    for step in range(args.warmup + args.steps):
        step_batches = batches[step * len(tasks):(step + 1) * len(tasks)]
        for method in METHODS:
            started = time.perf_counter()
            runners[method].run(iter(step_batches), step + 1)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if step >= args.warmup:
                seconds[method].append(time.perf_counter() - started)
    medians = {method: statistics.median(values) for method, values in seconds.items()}
    return {
        "steps_per_method": args.steps, "tasks": list(tasks), "batch_size": args.batch_size,
        "precision": accelerator.mixed_precision,
        "median_seconds": {m: round(v, 4) for m, v in medians.items()},
        "ratio_to_equal": {m: round(v / medians["equal"], 3) for m, v in medians.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="read the built-in tasks from this folder")
    parser.add_argument("--tasks", nargs="*", default=["conll2003", "sst2", "ag_news"])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mixed-precision", default="auto")
    print(json.dumps({"machine": describe_machine(), **time_steps(parser.parse_args())}, indent=2))


if __name__ == "__main__":
    main()
