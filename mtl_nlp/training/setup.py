"""Building the pieces of a run from its config: accelerator, heads, loader, optimizer."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs

from mtl_nlp.config import ConfigError, RunConfig, TrainConfig
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.data.pipeline import TaskData
from mtl_nlp.modeling.heads import HeadConfig
from mtl_nlp.modeling.model import is_checkpoint
from mtl_nlp.training.precision import resolve_mixed_precision

STATE_DIR = "state"  # the resumable Accelerate state, inside output_dir


def build_accelerator(config: RunConfig) -> Accelerator:
    """An Accelerator for the run: precision resolved, accumulation set, DDP told that only one
    head takes part in each step (the other heads get no gradient)."""
    use_cpu = not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision=resolve_mixed_precision(config.mixed_precision, use_cpu),
        gradient_accumulation_steps=config.train.grad_accum,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    if use_cpu:
        torch.set_num_threads(config.cpu_threads or cpu_threads_per_process(accelerator))
    return accelerator


def cpu_threads_per_process(accelerator: Accelerator) -> int:
    """The cores this process may use divided by the processes on this machine.

    `accelerate launch` without a config pins OMP_NUM_THREADS=1, which halves CPU training speed
    on a 2-core machine; the run's own choice (config.cpu_threads) takes precedence over it.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    return max(1, (cores or 1) // max(local, 1))


def check_output_dir(config: RunConfig) -> None:
    """Refuse to start a fresh run over a directory that already holds a trained checkpoint."""
    output = Path(config.output_dir)
    if not is_checkpoint(output):
        return
    if config.resume_from is None:
        raise ConfigError(
            f"output_dir {output} already holds a checkpoint; choose another output_dir, "
            f"or resume it with resume_from={output}"
        )
    resumed = Path(config.resume_from).resolve()
    if resumed not in (output.resolve(), (output / STATE_DIR).resolve()):
        raise ConfigError(
            f"output_dir {output} already holds a checkpoint of another run; resuming "
            f"{config.resume_from} would overwrite it: choose an empty output_dir"
        )


def head_configs(tasks: dict[str, TaskData]) -> list[HeadConfig]:
    """One head per task, with the task's label set."""
    return [HeadConfig(name=name, type=data.spec.type, labels=data.labels, pooling=data.spec.pooling)
            for name, data in tasks.items()]


def build_train_loader(
    config: RunConfig, tasks: dict[str, TaskData], tokenizer, accelerator: Accelerator
) -> MultiTaskLoader:
    """The task-sampling loader; this process's shard of every task's batches."""
    return MultiTaskLoader(
        tasks, tokenizer, batch_size=config.train.batch_size, max_tokens=config.train.max_tokens,
        strategy=config.sampling.strategy, temperature=config.sampling.temperature,
        seed=config.seed, num_replicas=accelerator.num_processes, rank=accelerator.process_index,
    )


def count_optimizer_steps(train: TrainConfig, loader: MultiTaskLoader) -> int:
    """train.max_steps when set, else train.epochs passes over every task's batches."""
    if train.max_steps is not None:
        return train.max_steps
    return max(1, math.ceil(train.epochs * loader.batches_per_epoch / train.grad_accum))
