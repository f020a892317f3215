"""Evaluation: length-sorted batches, predictions gathered from every process, task metrics."""

from __future__ import annotations

from collections import defaultdict

import torch
from accelerate import Accelerator
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mtl_nlp.common.long_texts import merge_word_sequences
from mtl_nlp.data.answers import ROW_COLUMN
from mtl_nlp.data.batching import SortedBatchSampler
from mtl_nlp.data.features import FEATURE_COLUMNS, IGNORE_INDEX, WINDOW_COLUMNS
from mtl_nlp.data.pipeline import TaskData, build_collator
from mtl_nlp.training.answer_evaluation import evaluate_answers
from mtl_nlp.training.class_reports import (
    ClassReport,
    classification_report,
    multilabel_report,
    tagging_report,
)
from mtl_nlp.training.metrics import (
    EXACT_MATCH,
    choice_metrics,
    classification_metrics,
    exact_match,
    multilabel_metrics,
    regression_metrics,
    tagging_metrics,
)


def build_eval_loaders(
    tasks: dict[str, TaskData], split: str | None, tokenizer, batch_size: int,
    accelerator: Accelerator,
) -> dict[str, DataLoader]:
    """One prepared DataLoader per task over `split` (None: each task's final evaluation split)."""
    loaders = {}
    for name, data in tasks.items():
        dataset = data.splits[split or data.eval_split]
        wanted = FEATURE_COLUMNS + WINDOW_COLUMNS + (ROW_COLUMN,)
        columns = [column for column in wanted if column in dataset.column_names]
        loader = DataLoader(
            dataset.select_columns(columns),
            batch_sampler=SortedBatchSampler(list(dataset["length"]), batch_size),
            collate_fn=build_collator(data.spec.type, tokenizer),
            # A generator of its own: starting an iterator otherwise draws a seed from the global
            # torch RNG, which drives dropout, so how often a run evaluates would change how it trains.
            generator=torch.Generator(),
        )
        loaders[name] = accelerator.prepare(loader)
        # an extractive QA task's answers are decoded from its windows' offsets and context, which
        # the scoring reads from the split by row (they do not go through the collator)
        loaders[name].scored_split = dataset
    return loaders


def tagged_sequences(
    predictions: list[list[int]], labels: list[list[int]], names: list[str],
    windows: list[tuple[int, int]] | None = None,
) -> tuple[list[list[str]], list[list[str]]]:
    """Word-level gold and predicted tags: the positions whose label is not IGNORE_INDEX.

    With `windows` ((example_index, word_start) of each row), rows are overlapping windows of
    longer examples: each example's words are put back together, every word tagged by the window
    where it has the most context (see mtl_nlp/common/long_texts.py), one sequence per example.
    """
    rows = []
    for row_predictions, row_labels in zip(predictions, labels):
        rows.append([(p, g) for p, g in zip(row_predictions, row_labels) if g != IGNORE_INDEX])
    if windows is not None:
        by_example: dict[int, list[tuple[int, list[tuple[int, int]]]]] = defaultdict(list)
        for (example, word_start), words in zip(windows, rows):
            by_example[example].append((word_start, words))
        rows = [merge_word_sequences(by_example[example]) for example in sorted(by_example)]
    gold = [[names[g] for _, g in row] for row in rows]
    predicted = [[names[p] for p, _ in row] for row in rows]
    return gold, predicted


def _predict_batch(
    accelerator: Accelerator, model: nn.Module, task: str, batch: dict[str, Tensor], tagging: bool
) -> tuple[Tensor, ...]:
    """(predictions, labels[, example_index, word_start]) of one batch, gathered from every process."""
    labels = batch.pop("labels")
    windows = tuple(batch.pop(column) for column in WINDOW_COLUMNS if column in batch)
    logits = model(task=task, **batch)["logits"]
    # The head decodes its own output: label ids, tag ids, values, or 0/1 label vectors.
    predictions = accelerator.unwrap_model(model).heads[task].decode(logits)
    if tagging:
        # Processes pad to different lengths; align before gathering.
        predictions = accelerator.pad_across_processes(predictions, dim=1, pad_index=IGNORE_INDEX)
        labels = accelerator.pad_across_processes(labels, dim=1, pad_index=IGNORE_INDEX)
    return accelerator.gather_for_metrics((predictions, labels, *windows))


def task_scores(
    task_type: str, predictions: list, labels: list, names: list[str], with_report: bool = True,
    windows: list[tuple[int, int]] | None = None, positive: str | None = None,
) -> tuple[dict[str, float], ClassReport]:
    """One task's metrics and (`with_report`) its per-class report (none for regression);
    `windows` says which example and word each row of a windowed tagging split starts at;
    `positive` is the label whose F1 a two-label classification task also reports."""
    if task_type == "token_classification":
        gold, predicted = tagged_sequences(predictions, labels, names, windows)
        report = tagging_report(gold, predicted) if with_report else {}
        return tagging_metrics(gold, predicted), report
    if task_type == "regression":
        return regression_metrics(labels, predictions), {}
    if task_type == "multiple_choice":  # option indices: no label set to report on
        return choice_metrics(labels, predictions), {}
    if task_type == "multilabel":
        gold_rows = [[int(g) for g in row] for row in labels]
        report = multilabel_report(gold_rows, predictions, names) if with_report else {}
        return multilabel_metrics(gold_rows, predictions), report
    gold, predicted = [names[g] for g in labels], [names[p] for p in predictions]
    report = classification_report(gold, predicted, names) if with_report else {}
    return classification_metrics(gold, predicted, positive), report


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
    # One autocast region around every batch: autocast caches its bf16/fp16 copies of the
    # weights until its outermost region closes, so they are cast once per evaluation instead of
    # once per batch (the prepared model's own per-forward autocast nests inside).
    with accelerator.autocast():
        for task, loader in loaders.items():
            if tasks[task].heads:  # an entry of several heads: scores per head and joint ones
                scores, head_reports = _evaluate_entry(accelerator, model, task, loader, tasks[task],
                                                       with_reports)
                results.update(scores)
                reports.update(head_reports)
                continue
            results[task], reports[task] = _evaluate_task(
                accelerator, model, task, loader, tasks[task], with_reports)
    model.train(was_training)
    return results, reports


def _evaluate_task(
    accelerator: Accelerator, model: nn.Module, task: str, loader: DataLoader, task_data: TaskData,
    with_reports: bool,
) -> tuple[dict[str, float], ClassReport]:
    """One task's scores and report over every example of its loader."""
    task_type = task_data.spec.type
    if task_type == "extractive_qa":  # answers decoded per question over its windows: no report
        return evaluate_answers(accelerator, model, task, loader, loader.scored_split), {}
    all_predictions: list = []
    all_labels: list = []
    all_windows: list[tuple[int, int]] = []
    for batch in loader:
        predictions, labels, *windows = _predict_batch(
            accelerator, model, task, batch, task_type == "token_classification"
        )
        all_predictions.extend(predictions.tolist())
        all_labels.extend(labels.tolist())
        if windows:
            all_windows.extend(zip(windows[0].tolist(), windows[1].tolist()))
    return _score(task_data, all_predictions, all_labels, with_reports, all_windows or None)


def _score(
    task_data: TaskData, predictions: list, labels: list, with_reports: bool,
    windows: list[tuple[int, int]] | None,
) -> tuple[dict[str, float], ClassReport]:
    """One head's scores and report from its gathered predictions and gold labels."""
    task_type = task_data.spec.type
    positive = task_data.labels[1] if task_type == "classification" and len(task_data.labels) == 2 else None
    return task_scores(task_type, _widened(task_data, predictions), labels, task_data.eval_labels,
                       with_reports, windows, positive)


def _widened(task_data: TaskData, predictions: list) -> list:
    """Multilabel prediction rows as wide as the gold rows, which also mark the labels never seen
    in training (the head never predicts them); other predictions as they are."""
    missing = len(task_data.eval_labels) - len(task_data.labels)
    if task_data.spec.type != "multilabel" or missing == 0:
        return predictions
    return [row + [0] * missing for row in predictions]


def _evaluate_entry(
    accelerator: Accelerator, model: nn.Module, entry: str, loader: DataLoader, data: TaskData,
    with_reports: bool,
) -> tuple[dict[str, dict[str, float]], dict[str, ClassReport]]:
    """Each head's scores and report (one forward per batch for all heads) and, for an entry of two
    or more heads with labels, {entry: {"exact_match": ...}}: the share of examples every head gets
    entirely right. A sentence head is scored on each example's first window (its start, as a
    truncated text would be read); a tagging head on every word."""
    predictions: dict[str, list] = {name: [] for name in data.heads}
    gold: dict[str, list] = {name: [] for name in data.heads}
    windows: list[tuple[int, int]] = []
    for batch in loader:
        rows = _predict_entry_batch(accelerator, model, entry, batch, data)
        for name in data.heads:
            predictions[name].extend(rows[0][name])
            gold[name].extend(rows[1][name])
        windows.extend(rows[2])
    first = _first_windows(windows) if windows else None
    results, reports = {}, {}
    joint_gold, joint_predicted = {}, {}
    for name, head in data.heads.items():
        tagging = head.spec.type == "token_classification"
        head_predictions, head_gold = predictions[name], gold[name]
        if first is not None and not tagging:  # the sentence label repeats on every window
            head_predictions = [head_predictions[row] for row in first]
            head_gold = [head_gold[row] for row in first]
        head_windows = (windows or None) if tagging else None
        results[name], reports[name] = _score(head, head_predictions, head_gold, with_reports, head_windows)
        answers = _example_answers(head, head_predictions, head_gold, head_windows)
        if answers is not None:
            joint_gold[name], joint_predicted[name] = answers
    if len(joint_gold) > 1:
        results[entry] = {EXACT_MATCH: exact_match(joint_gold, joint_predicted)}
    return results, reports


def _predict_entry_batch(
    accelerator: Accelerator, model: nn.Module, entry: str, batch: dict, data: TaskData
) -> tuple[dict[str, list], dict[str, list], list[tuple[int, int]]]:
    """({head: predictions}, {head: gold labels}, windows) of one batch of an entry, gathered from
    every process in one call, so every head's rows stay in step."""
    labels = batch.pop("labels")
    windows = [batch.pop(column) for column in WINDOW_COLUMNS if column in batch]
    logits = model(task=entry, **batch)["logits"]
    heads = accelerator.unwrap_model(model).heads
    parts = []
    for name, head in data.heads.items():
        decoded, head_labels = heads[name].decode(logits[name]), labels[name]
        if head.spec.type == "token_classification":  # processes pad to different lengths
            decoded = accelerator.pad_across_processes(decoded, dim=1, pad_index=IGNORE_INDEX)
            head_labels = accelerator.pad_across_processes(head_labels, dim=1, pad_index=IGNORE_INDEX)
        parts += [decoded, head_labels]
    gathered = [part.tolist() for part in accelerator.gather_for_metrics((*parts, *windows))]
    predictions = {name: gathered[2 * index] for index, name in enumerate(data.heads)}
    gold = {name: gathered[2 * index + 1] for index, name in enumerate(data.heads)}
    return predictions, gold, list(zip(*gathered[2 * len(data.heads):]))


def _first_windows(windows: list[tuple[int, int]]) -> list[int]:
    """The row of each example's first window, in example order (as tagged_sequences orders)."""
    first: dict[int, int] = {}
    for row, (example, word_start) in enumerate(windows):
        if example not in first or word_start < windows[first[example]][1]:
            first[example] = row
    return [first[example] for example in sorted(first)]


def _example_answers(
    head: TaskData, predictions: list, labels: list, windows: list[tuple[int, int]] | None
) -> tuple[list, list] | None:
    """(gold, predicted) per example for the exact match: label names, word-level tag sequences or
    0/1 label rows; None for a regression head (a value is never exactly right)."""
    names = head.eval_labels
    if head.spec.type == "token_classification":
        return tagged_sequences(predictions, labels, names, windows)
    if head.spec.type == "regression":
        return None
    if head.spec.type == "multilabel":
        return [[int(g) for g in row] for row in labels], _widened(head, predictions)
    return [names[g] for g in labels], [names[p] for p in predictions]
