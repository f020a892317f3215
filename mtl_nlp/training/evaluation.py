"""Evaluation: length-sorted batches, predictions gathered from every process, task metrics."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mtl_nlp.data.batching import SortedBatchSampler
from mtl_nlp.data.features import FEATURE_COLUMNS, IGNORE_INDEX
from mtl_nlp.data.pipeline import TaskData, build_collator
from mtl_nlp.training.metrics import classification_metrics, tagging_metrics


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
    predictions = logits.argmax(dim=-1)
    if tagging:
        # Processes pad to different lengths; align before gathering.
        predictions = accelerator.pad_across_processes(predictions, dim=1, pad_index=IGNORE_INDEX)
        labels = accelerator.pad_across_processes(labels, dim=1, pad_index=IGNORE_INDEX)
    return accelerator.gather_for_metrics((predictions, labels))


@torch.no_grad()
def evaluate(
    accelerator: Accelerator, model: nn.Module, loaders: dict[str, DataLoader],
    tasks: dict[str, TaskData],
) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} over every example of each loader, in every process alike."""
    was_training = model.training
    model.eval()
    results = {}
    for task, loader in loaders.items():
        names = tasks[task].labels
        tagging = tasks[task].spec.type == "token_classification"
        all_predictions: list = []
        all_labels: list = []
        for batch in loader:
            predictions, labels = _predict_batch(accelerator, model, task, batch, tagging)
            all_predictions.extend(predictions.tolist())
            all_labels.extend(labels.tolist())
        if tagging:
            gold, predicted = tagged_sequences(all_predictions, all_labels, names)
            results[task] = tagging_metrics(gold, predicted)
        else:
            results[task] = classification_metrics(
                [names[g] for g in all_labels], [names[p] for p in all_predictions]
            )
    model.train(was_training)
    return results
