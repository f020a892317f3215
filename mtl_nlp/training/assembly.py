"""What a run trains, built from its config in one place: the tasks' data and the task-sampling
loader, the model (started from `init_from` when given), the loss weighting, the optimizer and the
schedule, prepared by Accelerate. A training run (training.run) and the affinity probe
(workflows.affinity) both start from it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from accelerate import Accelerator
from torch import nn
from transformers import PreTrainedTokenizerBase

from mtl_nlp.config import RunConfig
from mtl_nlp.data import TaskData, prepare_task_data
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.distill.teacher_outputs import attach_teacher_outputs
from mtl_nlp.modeling import MultiTaskModel, load_tokenizer
from mtl_nlp.registry import TaskSpec, resolve_tasks
from mtl_nlp.training.optim import build_optimizer, build_scheduler
from mtl_nlp.training.setup import build_train_loader, count_optimizer_steps, head_configs, sharing_shape
from mtl_nlp.training.teacher_annealing import TeacherAnnealing
from mtl_nlp.training.weighting import LossWeighting, build_weighting

logger = logging.getLogger(__name__)


@dataclass
class RunParts:
    """The pieces of one run; model, optimizer and scheduler are prepared by Accelerate."""

    specs: list[TaskSpec]
    tokenizer: PreTrainedTokenizerBase
    tasks: dict[str, TaskData]
    loader: MultiTaskLoader
    model: nn.Module
    weighting: LossWeighting
    optimizer: Any
    scheduler: Any
    steps: int  # optimizer steps the run takes
    annealing: TeacherAnnealing | None = None  # the gold weight of distilled tasks (None: no teachers)


def log_head_starts(model: MultiTaskModel, started: list[str], checkpoint: str | None) -> None:
    """One line on where the weights start: the checkpoint's encoder and the heads it gave, and,
    for the other pooler heads, the encoder's pretrained pooler or a fresh one."""
    if checkpoint:
        fresh = [task for task in model.task_names if task not in started]
        logger.info("starting from %s: encoder and the heads of %s%s", checkpoint,
                    ", ".join(started) or "no task", f"; fresh heads: {', '.join(fresh)}" if fresh else "")
    by_start: dict[str, list[str]] = {}
    for head, start in model.pooler_starts.items():
        if head not in started:
            by_start.setdefault(start, []).append(head)
    for start, heads in by_start.items():
        logger.info("pooler heads %s start from %s", ", ".join(heads), start)


def assemble_run(config: RunConfig, accelerator: Accelerator) -> RunParts:
    """Data, loader, model, weighting, optimizer and schedule of `config` (the main process fills
    the features cache first; the others read it)."""
    specs = resolve_tasks(config.tasks)
    tokenizer = load_tokenizer(config.model)
    with accelerator.main_process_first():
        tasks = prepare_task_data(
            specs, tokenizer, config.max_length, config.data_dir, config.cache_dir, config.seed,
            config.max_train_examples, config.max_eval_examples, config.stride,
        )
        teachers = attach_teacher_outputs(tasks, config.distill.teachers, tokenizer, config.max_length,
                                          config.train.eval_batch_size, accelerator.device,
                                          accelerator.mixed_precision, config.distill.temperature)
    loader = build_train_loader(config, tasks, tokenizer, accelerator)
    model = MultiTaskModel.from_encoder(config.model, head_configs(tasks), sharing_shape(config))
    started = model.start_from_checkpoint(config.init_from) if config.init_from else []
    log_head_starts(model, started, config.init_from)
    weighting = build_weighting(
        config.weighting, {name: data.train_size for name, data in tasks.items()},
        {name: data.spec.loss_weight for name, data in tasks.items()}, seed=config.seed,
    )
    train = config.train
    optimizer = build_optimizer(model, train.lr, train.weight_decay, train.head_lr, weighting,
                                config.weighting.lr, train.layer_lr_decay, config.sharing.adapters.lr)
    steps = count_optimizer_steps(train, loader)
    # Accelerate steps a prepared scheduler once per process for every optimizer step.
    scheduler = build_scheduler(optimizer, steps * accelerator.num_processes, train.warmup_ratio)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    annealing = TeacherAnnealing.from_config(config.distill, steps) if teachers else None
    return RunParts(specs, tokenizer, tasks, loader, model, weighting, optimizer, scheduler, steps, annealing)
