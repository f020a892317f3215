"""Evaluation: length-sorted batches, predictions gathered from every process, task metrics."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mtl_nlp.data.batching import SortedBatchSampler
from mtl_nlp.data.features import FEATURE_COLUMNS, IGNORE_INDEX
from mtl_nlp.data.pipeline import TaskData, build_collator
from mtl_nlp.training.metrics import (
    classification_metrics,
    multilabel_metrics,
    regression_metrics,
    tagging_metrics,
)
from mtl_nlp.training.reports import (
    ClassReport,
    classification_report,
    multilabel_report,
    tagging_report,
)


def build_eval_loaders(
    tasks: dict[str, TaskData], split: str | None, tokenizer, batch_size: int,
    accelerator: Accelerator,
) -> dict[str, DataLoader]:
    """One prepared DataLoader per task over `split` (None: each task's final evaluation split)."""
    loaders = {}
    for name, data in tasks.items():
        dataset = data.splits[split or data.eval_split]
        columns = [column for column in FEATURE_COLUMNS if column in dataset.column_names]
        loader = DataLoader(
            dataset.select_columns(columns),
            batch_sampler=SortedBatchSampler(list(dataset["length"]), batch_size),
            collate_fn=build_collator(data.spec.type, tokenizer),
        )
        loaders[name] = accelerator.prepare(loader)
    return loaders


def tagged_sequences(
    predictions: list[list[int]], labels: list[list[int]], names: list[str]
) -> tuple[list[list[str]], list[list[str]]]:
    """Word-level gold and predicted tags: the positions whose label is not IGNORE_INDEX."""
    gold, predicted = [], []
    for row_predictions, row_labels in zip(predictions, labels):
        kept = [(p, g) for p, g in zip(row_predictions, row_labels) if g != IGNORE_INDEX]
        gold.append([names[g] for _, g in kept])
        predicted.append([names[p] for p, _ in kept])
    return gold, predicted


def _predict_batch(
    accelerator: Accelerator, model: nn.Module, task: str, batch: dict[str, Tensor], tagging: bool
) -> tuple[Tensor, Tensor]:
    labels = batch.pop("labels")
    logits = model(task=task, **batch)["logits"]
    # The head decodes its own output: label ids, tag ids, values, or 0/1 label vectors.
    predictions = accelerator.unwrap_model(model).heads[task].decode(logits)
    if tagging:
        # Processes pad to different lengths; align before gathering.
        predictions = accelerator.pad_across_processes(predictions, dim=1, pad_index=IGNORE_INDEX)
        labels = accelerator.pad_across_processes(labels, dim=1, pad_index=IGNORE_INDEX)
    return accelerator.gather_for_metrics((predictions, labels))


def task_metrics(
    task_type: str, predictions: list, labels: list, names: list[str]
) -> dict[str, float]:
    """Score one task's gathered predictions against its gold labels, by task type."""
    return task_scores(task_type, predictions, labels, names, with_report=False)[0]


def task_scores(
    task_type: str, predictions: list, labels: list, names: list[str], with_report: bool = True,
) -> tuple[dict[str, float], ClassReport]:
    """One task's metrics and (`with_report`) its per-class report (none for regression)."""
    if task_type == "token_classification":
        gold, predicted = tagged_sequences(predictions, labels, names)
        report = tagging_report(gold, predicted) if with_report else {}
        return tagging_metrics(gold, predicted), report
    if task_type == "regression":
        return regression_metrics(labels, predictions), {}
    if task_type == "multilabel":
        gold_rows = [[int(g) for g in row] for row in labels]
        report = multilabel_report(gold_rows, predictions, names) if with_report else {}
        return multilabel_metrics(gold_rows, predictions), report
    gold, predicted = [names[g] for g in labels], [names[p] for p in predictions]
    report = classification_report(gold, predicted, names) if with_report else {}
    return classification_metrics(gold, predicted), report


def evaluate(
    accelerator: Accelerator, model: nn.Module, loaders: dict[str, DataLoader],
    tasks: dict[str, TaskData],
) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} over every example of each loader, in every process alike (the
    validation scores of model selection: no per-class reports)."""
    return evaluate_with_reports(accelerator, model, loaders, tasks, with_reports=False)[0]


@torch.no_grad()
def evaluate_with_reports(
    accelerator: Accelerator, model: nn.Module, loaders: dict[str, DataLoader],
    tasks: dict[str, TaskData], with_reports: bool = True,
) -> tuple[dict[str, dict[str, float]], dict[str, ClassReport]]:
    """({task: {metric: value}}, {task: per-class report}) over every example of each loader."""
    was_training = model.training
    model.eval()
    results, reports = {}, {}
    for task, loader in loaders.items():
        task_type = tasks[task].spec.type
        all_predictions: list = []
        all_labels: list = []
        for batch in loader:
            predictions, labels = _predict_batch(
                accelerator, model, task, batch, task_type == "token_classification"
            )
            all_predictions.extend(predictions.tolist())
            all_labels.extend(labels.tolist())
        results[task], reports[task] = task_scores(
            task_type, all_predictions, all_labels, tasks[task].labels, with_reports
        )
    model.train(was_training)
    return results, reports
