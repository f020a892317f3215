"""Whole runs from a RunConfig: training (data, model, Accelerate loop, final test scores,
model card) and the scoring of a saved checkpoint.

`recipes/cls_ner.py` and `mtl-nlp train` both call `train_from_config`; under
`accelerate launch` or torchrun every process runs it. `mtl-nlp evaluate` calls
`evaluate_checkpoint`.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from mtl_nlp.common.glue import glue_average
from mtl_nlp.common.run_files import METRICS_FILE
from mtl_nlp.config import ConfigError, RunConfig
from mtl_nlp.data import TaskData, prepare_task_data
from mtl_nlp.data.features import windowed_examples
from mtl_nlp.data.pipeline import head_main_metrics
from mtl_nlp.modeling import MultiTaskModel, load_tokenizer
from mtl_nlp.modeling.encoder import check_encoder
from mtl_nlp.registry import resolve_tasks
from mtl_nlp.reports.model_card import write_checkpoint_card
from mtl_nlp.reports.run_results import MAIN_METRICS, OVERALL, REPORTS, UNSEEN_LABELS, WINDOWS, task_entries
from mtl_nlp.reports.score_tables import format_next_steps, format_scores
from mtl_nlp.training.assembly import assemble_run
from mtl_nlp.training.class_reports import format_reports
from mtl_nlp.training.evaluation import build_eval_loaders, evaluate_with_reports
from mtl_nlp.training.metrics import overall_score, recorded_main_metrics
from mtl_nlp.training.setup import (
    build_accelerator,
    check_output_dir,
    start_trackers,
)
from mtl_nlp.training.trainer import MultiTaskTrainer

logger = logging.getLogger(__name__)


def train_from_config(config: RunConfig) -> dict[str, Any]:
    """Train, keep the best checkpoint by mean validation score in output_dir, score it on each
    task's test split (validation if none) and return those metrics (also in metrics.json)."""
    check_encoder(config.model, config.max_length)  # before anything starts
    accelerator = build_accelerator(config)
    set_seed(config.seed)
    check_output_dir(config)
    start_trackers(accelerator, config)

    # Data, model, loss weighting and optimization, prepared by Accelerate.
    parts = assemble_run(config, accelerator)
    specs, tokenizer, tasks, model = parts.specs, parts.tokenizer, parts.tasks, parts.model
    optimizer, scheduler, weighting = parts.optimizer, parts.scheduler, parts.weighting

    # Train, keeping the best checkpoint by mean validation score.
    validation = build_eval_loaders(tasks, "validation", tokenizer, config.train.eval_batch_size, accelerator)
    trainer = MultiTaskTrainer(
        accelerator, model, optimizer, scheduler, parts.loader, validation, tasks, config.train,
        config.output_dir, tokenizer,
        checkpoint_extra={
            "max_length": config.max_length, "stride": config.stride, "run_config": config.to_dict(),
            "data_sources": {head.name: spec.source for spec in specs for head in (spec, *spec.head_specs)},
        },
        weighting=weighting, conflict_every=config.diagnostics.conflict_every, annealing=parts.annealing,
    )
    if config.resume_from:
        trainer.resume(config.resume_from)
    elif config.init_from:
        # The starting point is a candidate too: a second stage never keeps a model that scores
        # worse on validation than the checkpoint it started from.
        trainer.evaluate_and_checkpoint()
    trainer.train()

    # Final scores of the best checkpoint on each task's test split (validation if none).
    trainer.load_best()
    final = build_eval_loaders(tasks, None, tokenizer, config.train.eval_batch_size, accelerator)
    metrics = final_metrics(accelerator, model, final, tasks)
    trainer.write_json(METRICS_FILE, metrics)
    trainer.write_reports()
    if accelerator.is_main_process:
        write_checkpoint_card(config.output_dir, metrics, split="test")
    best = f"step {trainer.progress.best_step}, validation overall {trainer.progress.best_score:.4f}"
    print_metrics(accelerator, metrics, f"test scores of the best checkpoint ({best}):")
    accelerator.print(format_next_steps(config.output_dir, list(task_entries(metrics))))
    # Every process reaches teardown together: a rank destroying the process group while the
    # main one still writes files can leave gloo waiting forever. The DDP wrapper (whose reducer
    # holds the process group) goes first, on every rank at once, so that no rank tears gloo
    # down later, alone, after its peers have exited.
    accelerator.wait_for_everyone()
    del trainer, parts, model, optimizer, scheduler
    accelerator.free_memory()
    gc.collect()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def evaluate_checkpoint(directory: str | Path, config: RunConfig) -> dict[str, Any]:
    """Score checkpoint `directory` on the test split (validation if none) of each task of
    `config`; every task must be one of the checkpoint's, with the same labels."""
    accelerator = build_accelerator(config)
    model = MultiTaskModel.from_pretrained(directory)
    tokenizer = load_tokenizer(str(directory))
    specs = resolve_tasks(config.tasks)
    unknown = [head.name for spec in specs for head in spec.head_specs if head.name not in model.head_configs]
    if unknown:
        raise ConfigError(f"task(s) {', '.join(unknown)} not in checkpoint {directory}, whose tasks are: "
                          f"{', '.join(model.task_names)}")
    with accelerator.main_process_first():
        tasks = prepare_task_data(specs, tokenizer, config.max_length, config.data_dir, config.cache_dir,
                                  config.seed, max_eval_examples=config.max_eval_examples,
                                  stride=config.stride)
    for name, data in ((name, head) for entry in tasks.values() for name, head in entry.head_data.items()):
        saved = model.head_configs[name].labels
        if saved and data.labels != saved:
            raise ConfigError(f"task {name!r}: the data's labels {data.labels} differ from the "
                              f"checkpoint's {saved}")
    model = accelerator.prepare(model)
    loaders = build_eval_loaders(tasks, None, tokenizer, config.train.eval_batch_size, accelerator)
    return final_metrics(accelerator, model, loaders, tasks)


def final_metrics(
    accelerator: Accelerator, model: torch.nn.Module, loaders: dict[str, DataLoader],
    tasks: dict[str, TaskData],
) -> dict[str, Any]:
    """metrics.json's content: {task: metrics} (each head of an entry of several heads as a task, and
    the entry's {"exact_match"} under its name), "overall" ({"score": the mean main metric over
    heads}, with
    "glue_average", "glue_tasks" and "glue_scores" when two or more tasks are GLUE's), "main_metrics"
    ({task: its main metric}), "reports"
    ({task: per-class precision, recall, F1 and support}) and, for tagging tasks, "windows"
    ({task: {"examples", "windowed_examples"}}: how many examples were longer than max_length
    and scored as overlapping windows) and, where the scored split holds labels never seen in
    training, "unseen_labels" ({task: {label: occurrences}}, scored as errors)."""
    metrics, reports = evaluate_with_reports(accelerator, model, loaders, tasks)
    main_metrics = head_main_metrics(tasks)
    overall = {"score": overall_score(metrics, main_metrics), **(glue_average(metrics) or {})}
    summary = {**metrics, OVERALL: overall, MAIN_METRICS: recorded_main_metrics(metrics, main_metrics),
               REPORTS: reports}
    windows = {}
    for name, data in tasks.items():
        split = data.splits[data.eval_split]
        if "example_index" in split.column_names:
            examples = len(set(split["example_index"]))
            windows[name] = {"examples": examples, "windowed_examples": windowed_examples(split)}
    if windows:
        summary[WINDOWS] = windows
    unseen = {name: head.unseen[head.eval_split] for data in tasks.values()
              for name, head in data.head_data.items() if head.eval_split in head.unseen}
    if unseen:  # gold labels the training data lacks, scored as errors: {task: {label: occurrences}}
        summary[UNSEEN_LABELS] = unseen
    return summary


def print_metrics(accelerator: Accelerator, metrics: dict[str, Any], title: str) -> None:
    """The scores as one labelled table, then the per-class reports (main process)."""
    accelerator.print(format_scores(metrics, title))
    reports = format_reports(metrics[REPORTS])
    if reports:
        accelerator.print("per-class precision, recall and F1:\n" + reports)
