"""From task specs to model-ready features: load, resolve labels, tokenize (cached)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset, DatasetDict, IterableDataset
from transformers import (
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
)

from mtl_nlp.common.errors import DataError
from mtl_nlp.common.task_types import LABEL_FREE_TYPES
from mtl_nlp.data.choices import ChoicesCollator, with_hub_answer_column
from mtl_nlp.data.features import IGNORE_INDEX, check_columns, encode_splits
from mtl_nlp.data.labels import (
    build_label_mapper,
    clean_label,
    declared_labels,
    label_column,
    resolve_labels,
    split_labels,
)
from mtl_nlp.data.loading import load_task_splits
from mtl_nlp.registry import MULTI_HEAD, TaskSpec

logger = logging.getLogger(__name__)


@dataclass
class TaskData:
    """One task's label set and its tokenized splits (train, validation, maybe test)."""

    spec: TaskSpec
    labels: list[str]
    splits: DatasetDict
    stream_size: int | None = None  # training examples of a streamed task (declared or counted)
    # labels of the scored splits never seen in training: {split: {label: occurrences}}; they are
    # scored as errors (the head cannot predict them)
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)
    # an entry of several heads: {head: its TaskData (head spec, labels, unseen), sharing `splits`};
    # the entry's own `labels` are empty
    heads: dict[str, TaskData] = field(default_factory=dict)
    # the training examples as loaded (before tokenization), which a teacher reads; None when streamed
    source_train: Dataset | None = None

    @property
    def head_data(self) -> dict[str, TaskData]:
        """{head name: its data}: an entry's heads, or this task alone (one head of its name)."""
        return self.heads or {self.spec.name: self}

    @property
    def main_metrics(self) -> dict[str, str]:
        """{head name: its main metric}, the scores that select checkpoints."""
        return {name: data.spec.main_metric for name, data in self.head_data.items()}

    @property
    def eval_labels(self) -> list[str]:
        """The label names evaluation reads gold ids with: the head's labels, then the unseen
        ones (ids the head never outputs)."""
        extra = sorted({label for counts in self.unseen.values() for label in counts})
        return [*self.labels, *extra]

    @property
    def train_size(self) -> int:
        """Training examples: the split's length, or a streamed task's size."""
        if isinstance(self.splits["train"], IterableDataset):
            return self.stream_size
        return len(self.splits["train"])

    @property
    def eval_split(self) -> str:
        """The split scored at the end of a run: test, or validation when there is no test."""
        return "test" if "test" in self.splits else "validation"


def head_main_metrics(tasks: dict[str, TaskData]) -> dict[str, str]:
    """{head: its main metric} over every head of `tasks`: what model selection averages."""
    return {name: metric for data in tasks.values() for name, metric in data.main_metrics.items()}


def prepare_task_data(
    specs: list[TaskSpec], tokenizer: PreTrainedTokenizerBase, max_length: int,
    data_dir: str | None = None, cache_dir: str | None = None, seed: int = 42,
    max_train_examples: int | None = None, max_eval_examples: int | None = None,
    stride: int | None = None,
) -> dict[str, TaskData]:
    """Load and tokenize every task (long tagging examples of the evaluation splits as windows
    sharing `stride` tokens, see encode_splits). Run it under `accelerator.main_process_first()` so the
    main process fills the datasets cache and the other processes read it."""
    prepared = {}
    for spec in specs:
        raw = load_task_splits(spec, data_dir=data_dir, cache_dir=cache_dir, seed=seed)
        limits = [n for n in (max_train_examples, spec.max_train_examples) if n is not None]
        raw = limit_examples(raw, min(limits, default=None), max_eval_examples, seed)
        if spec.type == "multiple_choice":
            raw = with_hub_answer_column(spec, raw)
        for split, dataset in raw.items():  # before the labels are read from the label column
            if not isinstance(dataset, IterableDataset):
                check_columns(spec, split, dataset.column_names)
        source = raw["train"] if isinstance(raw["train"], Dataset) else None
        if spec.heads is not None:
            prepared[spec.name] = _prepare_entry(spec, raw, tokenizer, max_length, stride)
            prepared[spec.name].source_train = source
            logger.info(describe_task_data(prepared[spec.name]))
            continue
        labels, size = labels_and_size(spec, raw["train"], min(limits, default=None))
        _check_f1(spec, labels)
        mapper = build_label_mapper(spec, raw["train"], labels)
        unseen = unseen_labels(spec, raw, labels, mapper)
        data = TaskData(spec=spec, labels=labels, splits=raw, stream_size=size, unseen=unseen,
                        source_train=source)
        eval_mapper = build_label_mapper(spec, raw["train"], data.eval_labels) if unseen else None
        data.splits = encode_splits(spec, raw, tokenizer, mapper, max_length, stride, eval_mapper)
        prepared[spec.name] = data
        logger.info(describe_task_data(data))
    return prepared


def describe_task_data(data: TaskData) -> str:
    """One line for a prepared task: its examples per split and its labels."""
    sizes = [f"{data.train_size} train{' (streamed)' if data.spec.streaming else ''}"]
    sizes += [f"{len(split)} {name}" for name, split in data.splits.items() if name != "train"]
    heads = data.head_data
    labels = ", ".join(f"{len(head.labels)} {name + ' ' if len(heads) > 1 else ''}labels"
                       for name, head in heads.items() if head.labels)
    return f"task {data.spec.name}: {', '.join(sizes)} examples" + (f"; {labels}" if labels else "")


def _prepare_entry(
    spec: TaskSpec, raw: DatasetDict, tokenizer: PreTrainedTokenizerBase, max_length: int,
    stride: int | None,
) -> TaskData:
    """An entry of several heads: each head's labels, mapper and unseen labels as for a task of
    its own, then one tokenized dataset whose `labels` hold every head's labels."""
    heads, mappers, eval_mappers = {}, {}, {}
    for head in spec.heads:
        labels = resolve_labels(head, raw["train"])
        _check_f1(head, labels)
        mappers[head.name] = build_label_mapper(head, raw["train"], labels)
        data = TaskData(spec=head, labels=labels, splits=raw,
                        unseen=unseen_labels(head, raw, labels, mappers[head.name]))
        eval_mappers[head.name] = (build_label_mapper(head, raw["train"], data.eval_labels)
                                   if data.unseen else mappers[head.name])
        heads[head.name] = data
    splits = encode_splits(spec, raw, tokenizer, mappers, max_length, stride, eval_mappers)
    for data in heads.values():
        data.splits = splits
    return TaskData(spec=spec, labels=[], splits=splits, heads=heads)


def _check_f1(spec: TaskSpec, labels: list[str]) -> None:
    if spec.type == "classification" and spec.metric == "f1" and len(labels) != 2:
        raise DataError(f"task {spec.name!r}: metric f1 is the second label's F1 of a two-label task, "
                        f"and this task has {len(labels)} labels; use macro_f1")


def unseen_labels(
    spec: TaskSpec, splits: DatasetDict, labels: list[str], mapper: object,
) -> dict[str, dict[str, int]]:
    """{split: {label: occurrences}} of the labels of validation and test that the training labels
    lack (ATIS has test intents and slot tags that never occur in train). They are kept and
    scored as errors, never dropped, so scores stay comparable with published ones; a warning
    says how many there are."""
    if spec.type in LABEL_FREE_TYPES:
        return {}
    known = set(labels)
    found: dict[str, dict[str, int]] = {}
    for split, dataset in splits.items():
        if split == "train" or isinstance(dataset, IterableDataset):
            continue
        counts: Counter = Counter()
        for value in dataset[label_column(spec)]:
            for label in labels_of_value(spec, value):
                if str(label) not in known and not _is_index(mapper, label, len(labels)):
                    counts[str(label)] += 1
        if counts:
            found[split] = dict(sorted(counts.items()))
            shown = ", ".join(f"{label} x{count}" for label, count in found[split].items())
            logger.warning("task %s, split %s: %d label occurrence(s) never seen in training, scored as "
                           "errors: %s", spec.name, split, sum(counts.values()), shown)
    return found


def _is_index(mapper: object, value: object, count: int) -> bool:
    """True when `value` is an integer class index the mapper accepts (e.g. SST-2's 0/1)."""
    single = getattr(mapper, "single", mapper)
    return (getattr(single, "integers_are_indices", False) and isinstance(value, int)
            and not isinstance(value, bool) and 0 <= value < count)


def labels_and_size(spec: TaskSpec, train: object, limit: int | None) -> tuple[list[str], int | None]:
    """The task's labels, and a streamed task's training examples (None for in-memory tasks): its
    declared `size`, else counted in the same pass over the stream that collects undeclared
    labels (logged, so a user knows what to declare to skip it)."""
    if not isinstance(train, IterableDataset):
        return resolve_labels(spec, train), None
    if spec.size is not None:
        return resolve_labels(spec, train), spec.size if limit is None else min(spec.size, limit)
    rows = 0

    def label_values() -> Iterator[object]:
        nonlocal rows
        column = label_column(spec)
        for row in train:
            rows += 1
            yield row[column]

    if declared_labels(spec, train) is None:
        labels = resolve_labels(spec, train, label_values())
    else:
        labels = resolve_labels(spec, train)
        rows = sum(1 for _ in train)
    logger.info("task %s: counted %d training examples in its stream (declare size: %d to skip this)",
                spec.name, rows, rows)
    return labels, rows


def labels_of_value(spec: TaskSpec, value: object) -> list[object]:
    """The labels one raw label cell holds: a tag list, a multilabel cell, or one class label."""
    if spec.type == "token_classification":
        values = list(value or [])
    elif spec.type == "multilabel":
        return split_labels(value, spec.label_separator)
    else:
        values = [value]
    return [cleaned for cleaned in map(clean_label, values) if cleaned is not None]


def limit_examples(
    splits: DatasetDict, max_train: int | None, max_eval: int | None, seed: int
) -> DatasetDict:
    """A seeded random subset of train and the first examples of the other splits, for quick runs."""
    limited = DatasetDict(splits)
    for split, dataset in splits.items():
        limit = max_train if split == "train" else max_eval
        if isinstance(dataset, IterableDataset):  # a stream: its first examples (shuffled later)
            if limit is not None:
                limited[split] = dataset.take(limit)
            continue
        if limit is not None and limit < len(dataset):
            if split == "train":
                dataset = dataset.shuffle(seed=seed)
            limited[split] = dataset.select(range(limit))
    return limited


def build_collator(task_type: str, tokenizer: PreTrainedTokenizerBase):
    """Dynamic padding to the longest example of each batch (tag labels padded with IGNORE_INDEX).

    Sentence-level labels need no padding, and tokenizer.pad keeps their type: class ids become
    an int64 [batch] tensor, regression floats a float32 [batch] tensor and multilabel multi-hot
    float rows a float32 [batch, labels] tensor (the mappers in data/labels.py emit floats for
    both, so the losses get the dtype they need).
    """
    if task_type == "token_classification":
        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)
    if task_type == MULTI_HEAD:
        return HeadLabelsCollator(tokenizer)
    if task_type == "multiple_choice":
        return ChoicesCollator(tokenizer)
    return DataCollatorWithPadding(tokenizer)


class HeadLabelsCollator:
    """Pads a batch of an entry of several heads: the inputs as DataCollatorWithPadding does, and
    `labels` becomes {head: tensor}: tag rows padded with IGNORE_INDEX to the padded length, one
    class id (int64), value or multi-hot row (float32) per text stacked."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [feature["labels"] for feature in features]
        batch = self.pad([{k: v for k, v in feature.items() if k != "labels"} for feature in features])
        length = batch["input_ids"].shape[1]
        batch["labels"] = {head: _head_labels([row[head] for row in rows], length) for head in rows[0]}
        return batch


def _head_labels(values: list[Any], length: int) -> torch.Tensor:
    # Tag rows are integer lists, one per token; multi-hot rows are float lists, one per label.
    first = values[0]
    if isinstance(first, list) and all(isinstance(value, int) for value in first):
        return torch.tensor([row + [IGNORE_INDEX] * (length - len(row)) for row in values])
    dtype = torch.long if isinstance(first, int) else torch.float32
    return torch.tensor(values, dtype=dtype)
