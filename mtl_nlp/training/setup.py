"""Building the pieces of a run from its config: accelerator, heads, loader, optimizer."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs

from mtl_nlp.common.precision import describe_precision, resolve_mixed_precision
from mtl_nlp.config import EVAL_EACH_EPOCH, ConfigError, RunConfig, TrainConfig, dotted_keys
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.data.pipeline import TaskData
from mtl_nlp.modeling.adapters import AdapterShape
from mtl_nlp.modeling.heads import HeadConfig
from mtl_nlp.modeling.model import is_checkpoint
from mtl_nlp.modeling.sharing import SharingShape
from mtl_nlp.registry import TaskSpec
from mtl_nlp.training.sharded import check_distributed_type

logger = logging.getLogger(__name__)

LOGS_DIR = "logs"  # tracker files (TensorBoard events, ...), inside output_dir


def build_accelerator(config: RunConfig) -> Accelerator:
    """An Accelerator for the run: precision resolved; DDP without the per-step search for unused
    parameters (the StepRunner gives every parameter a gradient, see unused_parameters.py).
    Gradient accumulation is the StepRunner's."""
    use_cpu = not torch.cuda.is_available()
    precision = resolve_mixed_precision(config.mixed_precision, use_cpu)
    check_trackers(config.tracker)
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision=precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
        log_with=config.tracker or None,
        project_dir=str(Path(config.output_dir) / LOGS_DIR),
    )
    check_distributed_type(accelerator, config)
    if accelerator.is_main_process:
        logger.info(describe_precision(config.mixed_precision, precision, use_cpu))
    if use_cpu:
        torch.set_num_threads(config.cpu_threads or cpu_threads_per_process(accelerator))
    return accelerator


def check_trackers(names: list[str]) -> None:
    """ConfigError for a tracker name Accelerate does not know or whose package is missing."""
    import accelerate.utils
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise ConfigError(f"tracker {name!r} is not one of: {', '.join(LOGGER_TYPE_TO_CLASS)}")
        available = getattr(accelerate.utils, f"is_{name}_available", None)
        if available is not None and not available():
            extra = ' (or pip install "mtl-nlp[tensorboard]")' if name == "tensorboard" else ""
            raise ConfigError(f"tracker {name!r} needs its package: pip install {name}{extra}")


def start_trackers(accelerator: Accelerator, config: RunConfig) -> None:
    """Open the run's trackers with its config as hyperparameters (scalars; lists as text)."""
    if not config.tracker:
        return
    flat = {}
    for key, value in dotted_keys(config.to_dict()).items():
        flat[key] = value if isinstance(value, int | float | str | bool) else str(value)
    accelerator.init_trackers(Path(config.output_dir).name or "mtl_nlp", config=flat)


def cpu_threads_per_process(accelerator: Accelerator) -> int:
    """OMP_NUM_THREADS when the user set it, else the cores this process may use divided by the
    processes on this machine.

    Launchers write OMP_NUM_THREADS=1 themselves when it is unset (torchrun for several processes,
    `accelerate launch` without a config), which halves CPU training speed on a 2-core machine:
    a 1 under a launcher is taken as theirs (cpu_threads=1 asks for one thread there). The run's
    own choice (config.cpu_threads) takes precedence over both.
    """
    chosen = os.environ.get("OMP_NUM_THREADS", "").strip()
    launched = "LOCAL_WORLD_SIZE" in os.environ or "ACCELERATE_MIXED_PRECISION" in os.environ
    if chosen.isdigit() and int(chosen) > 0 and not (chosen == "1" and launched):
        return int(chosen)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    return max(1, (cores or 1) // max(local, 1))


FOREIGN_MODEL_FILES = ("config.json", "tokenizer.json", "vocab.txt")  # a model folder, not a run


def check_output_dir(config: RunConfig) -> None:
    """Refuse to start a fresh run over a directory that already holds a trained checkpoint, and
    a resume_from that does not exist."""
    if config.resume_from is not None and not Path(config.resume_from).exists():
        raise ConfigError(f"resume_from: {config.resume_from} does not exist")
    output = Path(config.output_dir)
    if not is_checkpoint(output):
        foreign = sorted(path.name for path in output.iterdir()
                         if path.name in FOREIGN_MODEL_FILES or path.suffix in (".safetensors", ".bin")
                         ) if output.is_dir() else []
        if foreign:  # e.g. an encoder's folder: training must never write over it
            raise ConfigError(
                f"output_dir {output} holds files mtl_nlp did not write ({', '.join(foreign[:3])}); "
                "choose a new or empty output_dir"
            )
        return
    if config.resume_from is None:
        raise ConfigError(
            f"output_dir {output} already holds a checkpoint; choose another output_dir, "
            f"or resume it with resume_from={output}"
        )
    resumed = Path(config.resume_from).resolve()
    if output.resolve() not in (resumed, resumed.parent):  # the run's output_dir or a state in it
        raise ConfigError(
            f"output_dir {output} already holds a checkpoint of another run; resuming "
            f"{config.resume_from} would overwrite it: choose an empty output_dir"
        )


def head_configs(tasks: dict[str, TaskData]) -> list[HeadConfig]:
    """One head per task, from its entry (type, pooling, threshold, pairs, layer) and label set;
    an entry of several heads gives each of its heads, marked as the entry's."""
    return [head_config(head.spec, head.labels, data.spec.name if data.heads else None)
            for data in tasks.values() for head in data.head_data.values()]


def head_config(spec: TaskSpec, labels: list[str], entry: str | None = None) -> HeadConfig:
    """The head of task `spec` with its resolved label set; `entry`: the entry of several heads it
    belongs to (a task of its own is weighed by the run's loss weighting instead)."""
    return HeadConfig(
        name=spec.name, type=spec.type, labels=list(labels), pooling=spec.pooling,
        threshold=spec.threshold, text_pair=spec.text_pair_column is not None,
        layer=spec.layer, entry=entry, loss_weight=spec.loss_weight if entry else 1.0,
        layer_mix=spec.layer_mix, no_answer=spec.no_answer,
    )


def sharing_shape(config: RunConfig) -> SharingShape:
    """The run's `sharing.*` keys as the shape the model (and its checkpoint) records."""
    sharing = config.sharing
    adapters = None
    if sharing.adapters.method != "none":
        settings = dataclasses.asdict(sharing.adapters)
        settings.pop("lr")  # the optimizer's, not the model's
        # a frozen base is the pretrained encoder itself: an adapter export names it as its base
        base = config.model if not settings["train_base"] and not config.init_from else None
        adapters = AdapterShape(**settings, base=base)
    return SharingShape(private_layers=sharing.private_layers, soft_l2=sharing.soft_l2,
                        freeze_layers=sharing.freeze_layers, freeze_embeddings=sharing.freeze_embeddings,
                        freeze_encoder=sharing.freeze_encoder, adapters=adapters)


def build_train_loader(
    config: RunConfig, tasks: dict[str, TaskData], tokenizer, accelerator: Accelerator
) -> MultiTaskLoader:
    """The task-sampling loader; this process's shard of every task's batches. Its sampler is told
    the run's length, which the annealed schedule needs."""
    sampling = config.sampling
    loader = MultiTaskLoader(
        tasks, tokenizer, batch_size=config.train.batch_size, max_tokens=config.train.max_tokens,
        strategy=sampling.strategy, temperature=sampling.temperature, anneal=sampling.anneal,
        cap=sampling.cap, step_mode=config.train.step_mode, seed=config.seed,
        num_replicas=accelerator.num_processes, rank=accelerator.process_index,
        sort_window=config.train.sort_window,
    )
    steps = count_optimizer_steps(config.train, loader)
    loader.set_run_length(steps * config.train.grad_accum * loader.batches_per_step)
    return loader


def count_optimizer_steps(train: TrainConfig, loader: MultiTaskLoader) -> int:
    """train.max_steps when set, else train.epochs epochs of batches (see MultiTaskLoader; an
    epoch of `train.epoch: each_task` is batches_per_task_epoch); a step takes grad_accum x
    batches_per_step batches."""
    if train.max_steps is not None:
        return train.max_steps
    per_epoch, per_step = _epoch_and_step_batches(train, loader)
    return max(1, math.ceil(train.epochs * per_epoch / per_step))


def evaluation_interval(train: TrainConfig, loader: MultiTaskLoader) -> int:
    """Optimizer steps between evaluations: train.eval_every, or with "epoch" the steps of one
    epoch (as count_optimizer_steps counts them); 0: only at the end."""
    if train.eval_every != EVAL_EACH_EPOCH:
        return train.eval_every
    per_epoch, per_step = _epoch_and_step_batches(train, loader)
    return max(1, math.ceil(per_epoch / per_step))


def _epoch_and_step_batches(train: TrainConfig, loader: MultiTaskLoader) -> tuple[int, int]:
    """Batches in one epoch (an epoch of `train.epoch: each_task` is batches_per_task_epoch) and
    in one optimizer step (grad_accum x batches_per_step)."""
    per_epoch = loader.batches_per_task_epoch if train.epoch == "each_task" else loader.batches_per_epoch
    return per_epoch, train.grad_accum * loader.batches_per_step
