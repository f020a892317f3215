"""What per-task LoRA adapters cost a training step against hard sharing, and each shape's memory.

    python -m recipes.benchmarks.adapter_cost --data-dir ../shared/data

Step time: one process holds one model per shape (hard sharing; LoRA on a frozen encoder; LoRA
with the encoder trained; LoRA in the top 2 layers with the encoder trained), each with its own
optimizer; the shapes take turns on the same batches (one task per step, as `train.step_mode:
one_task` draws them), so a slow phase of a noisy machine hits all of them alike. Prints the median
step time of each shape and its ratio to hard sharing.

Memory (`--memory`): each shape alone in a fresh process, `--memory-steps` steps; the process's peak
resident memory (ru_maxrss; on a GPU the peak allocated memory), and its trainable parameters.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time

import torch
from accelerate import Accelerator

from mtl_nlp import MultiTaskModel, load_tokenizer, prepare_task_data, resolve_tasks
from mtl_nlp.common.precision import resolve_mixed_precision
from mtl_nlp.config import DEFAULT_MODEL, WeightingConfig
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.modeling.adapters import AdapterShape
from mtl_nlp.modeling.sharing import SharingShape
from mtl_nlp.training.optim import build_optimizer, build_scheduler
from mtl_nlp.training.progress import peak_memory_mb
from mtl_nlp.training.setup import head_configs
from mtl_nlp.training.step import StepRunner
from mtl_nlp.training.weighting import build_weighting

from .machine import describe_machine

SHAPES = {
    "hard": None,
    "lora": AdapterShape(),
    "lora_base": AdapterShape(train_base=True),
    "lora_base_top2": AdapterShape(train_base=True, layers=2),
}
TASKS = ["cola", "mrpc", "rte", "stsb", "sst2", "qnli", "mnli"]
ADAPTER_LR = 5e-4  # recipes/glue_benchmark.py's adapter rate


def training_data(args: argparse.Namespace) -> tuple[dict, list]:
    """The tasks (2,000 training examples each) and the batches every shape trains on, one task a
    batch as `train.step_mode: one_task` draws them: prepared once for all shapes."""
    tokenizer = load_tokenizer(args.model)
    tasks = prepare_task_data(resolve_tasks(args.tasks), tokenizer, 128, data_dir=args.data_dir,
                              max_train_examples=2000, max_eval_examples=10)
    loader = MultiTaskLoader(tasks, tokenizer, batch_size=args.batch_size, step_mode="one_task", seed=1)
    return tasks, list(itertools.islice(iter(loader), args.warmup + args.steps))


def build(shape: str, tasks: dict, args: argparse.Namespace,
          accelerator: Accelerator) -> tuple[StepRunner, int]:
    """The step runner of one shape, and its trainable parameter count."""
    model = MultiTaskModel.from_encoder(args.model, head_configs(tasks), SharingShape(adapters=SHAPES[shape]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = build_optimizer(model, 1e-4, 0.01, adapter_lr=ADAPTER_LR)
    scheduler = build_scheduler(optimizer, 10**6, 0.0)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    sizes = {name: len(data.splits["train"]) for name, data in tasks.items()}
    weighting = build_weighting(WeightingConfig(), sizes, dict.fromkeys(sizes, 1.0))
    runner = StepRunner(accelerator, model, optimizer, scheduler, weighting, grad_accum=1,
                        batches_per_step=1, max_grad_norm=1.0)
    return runner, trainable


def accelerator_for(args: argparse.Namespace) -> Accelerator:
    return Accelerator(cpu=not torch.cuda.is_available(),
                       mixed_precision=resolve_mixed_precision(args.mixed_precision))


def time_steps(args: argparse.Namespace) -> dict:
    """Median seconds per step of each shape, the shapes taking turns on the same batches."""
    accelerator = accelerator_for(args)
    tasks, batches = training_data(args)
    built = {shape: build(shape, tasks, args, accelerator) for shape in args.shapes}
    seconds: dict[str, list[float]] = {shape: [] for shape in built}
    for step, batch in enumerate(batches):
        for shape, (runner, _) in built.items():
            started = time.perf_counter()
            runner.run(iter([batch]), step + 1)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if step >= args.warmup:
                seconds[shape].append(time.perf_counter() - started)
    medians = {shape: statistics.median(values) for shape, values in seconds.items()}
    first = medians[args.shapes[0]]  # the ratios' unit: hard sharing unless --shapes says otherwise
    ratios = {shape: round(value / first, 3) for shape, value in medians.items()}
    return {"steps_per_shape": args.steps, "tasks": args.tasks, "batch_size": args.batch_size,
            "precision": accelerator.mixed_precision,
            "median_seconds": {shape: round(value, 4) for shape, value in medians.items()},
            f"ratio_to_{args.shapes[0]}": ratios,
            "trainable_parameters": {shape: trainable for shape, (_, trainable) in built.items()}}


def one_shape_memory(args: argparse.Namespace) -> dict:
    """This process trains one shape `--memory-steps` steps: its peak memory."""
    tasks, batches = training_data(args)
    runner, trainable = build(args.shape, tasks, args, accelerator_for(args))
    for step, batch in enumerate(batches):
        runner.run(iter([batch]), step + 1)
    return {"peak_memory_mb": round(peak_memory_mb(), 1), "trainable_parameters": trainable}


def memory(args: argparse.Namespace) -> dict:
    """Each shape's peak memory, every shape in a fresh process."""
    shared = ["--data-dir", str(args.data_dir), "--model", args.model, "--batch-size", str(args.batch_size),
              "--memory-steps", str(args.memory_steps), "--tasks", *args.tasks]
    found = {}
    for shape in args.shapes:
        result = subprocess.run([sys.executable, "-m", "recipes.benchmarks.adapter_cost", "--shape", shape,
                                 *shared], capture_output=True, text=True, check=True)
        found[shape] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="read the built-in tasks from this folder")
    parser.add_argument("--tasks", nargs="*", default=TASKS)
    parser.add_argument("--shapes", nargs="*", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=28, help="timed steps per shape (4 of each GLUE task)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mixed-precision", default="auto")
    parser.add_argument("--memory", action="store_true", help="each shape's peak memory, not step times")
    parser.add_argument("--memory-steps", type=int, default=14)
    parser.add_argument("--shape", choices=list(SHAPES), help=argparse.SUPPRESS)  # one memory process
    args = parser.parse_args()
    args.warmup, args.steps = (0, args.memory_steps) if args.shape else (args.warmup, args.steps)
    if args.shape:
        print(json.dumps(one_shape_memory(args)))
        return
    figures = memory(args) if args.memory else time_steps(args)
    print(json.dumps({"machine": describe_machine(), **figures}, indent=2))


if __name__ == "__main__":
    main()
