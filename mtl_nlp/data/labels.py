"""A task's label set and the mapping from raw label values to training targets: class ids
(classification, tagging), floats (regression), multi-hot vectors (multilabel)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from datasets import ClassLabel, Dataset, IterableDataset, Sequence

from mtl_nlp.common.errors import DataError
from mtl_nlp.common.task_types import LABEL_FREE_TYPES
from mtl_nlp.registry import TaskSpec


def label_column(spec: TaskSpec) -> str:
    """The column that holds the task's targets."""
    if spec.type == "extractive_qa":
        return spec.answers_column
    return spec.tags_column if spec.type == "token_classification" else spec.label_column


def _class_label(dataset: Dataset, column: str) -> ClassLabel | None:
    if dataset.features is None:  # a stream whose types are not known before reading it
        return None
    feature = dataset.features.get(column)
    if isinstance(feature, Sequence):
        feature = feature.feature
    if isinstance(feature, list) and feature:  # datasets >= 3 List features
        feature = feature[0]
    inner = getattr(feature, "feature", None)
    if isinstance(inner, ClassLabel):
        return inner
    return feature if isinstance(feature, ClassLabel) else None


def clean_label(value: object) -> object:
    """None for a missing label (None or NaN); whole floats as ints, since a CSV column of class
    indices with one empty cell is read as floats (1.0 means class 1)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def split_labels(value: object, separator: str) -> list[object]:
    """The labels of one multilabel cell: a list of labels, or a string of labels joined by
    `separator` (whitespace around each stripped). A missing value, an empty string and an empty
    list all mean "no labels"."""
    value = clean_label(value)
    if value is None:
        return []
    if isinstance(value, str):
        items: list[object] = value.split(separator)
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:  # a lone number, e.g. a CSV column of class indices that holds one label per cell
        items = [value]
    labels = []
    for item in items:
        item = clean_label(item)
        if isinstance(item, str):
            item = item.strip()
        if item is not None and item != "":
            labels.append(item)
    return labels


def resolve_labels(spec: TaskSpec, train: Dataset, values: Iterable[object] | None = None) -> list[str]:
    """The task's labels: `spec.labels`, else ClassLabel names, else sorted training labels (read
    from `values`, the label column's raw values, when given). Regression tasks have none; a
    tagging task's labels must be BIO tags."""
    labels = declared_labels(spec, train)
    if labels is None:
        if values is None:  # a stream is read once, keeping only the set of values
            column = label_column(spec)
            values = (row[column] for row in train) if isinstance(train, IterableDataset) else train[column]
        labels = labels_from_values(spec, values)
    if spec.type == "token_classification":
        check_bio_tags(spec.name, labels)
    return labels


def declared_labels(spec: TaskSpec, train: Dataset) -> list[str] | None:
    """The labels known without reading the data (none for regression, the entry's, or the
    column's ClassLabel names), or None when the training labels must be read."""
    if spec.type in LABEL_FREE_TYPES:  # a value, one of an example's options, a span of its context
        return []
    if spec.labels is not None:
        return list(spec.labels)
    class_label = _class_label(train, label_column(spec))
    return list(class_label.names) if class_label is not None else None


def labels_from_values(spec: TaskSpec, values: Iterable[object]) -> list[str]:
    """The sorted distinct labels among the label column's raw values (tag lists for tagging,
    label lists or joined strings for multilabel); missing values are skipped."""
    if spec.type == "token_classification":
        values = (tag for tags in values for tag in tags)
    elif spec.type == "multilabel":
        values = (label for cell in values for label in split_labels(cell, spec.label_separator))
    cleaned = (clean_label(value) for value in values)
    return sorted({str(value) for value in cleaned if value is not None})


def check_bio_tags(task: str, tags: list[str]) -> None:
    """DataError unless every tag is O, B-TYPE or I-TYPE: entities are decoded from BIO tags, and
    IOBES/BILOU (S-, E-, L-, U-) or bare type tags would be decoded wrongly without a word."""
    wrong = [tag for tag in tags if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2)]
    if wrong:
        shown = ", ".join(repr(tag) for tag in wrong[:5]) + (", ..." if len(wrong) > 5 else "")
        raise DataError(
            f"task {task!r}: tags {shown} are not BIO tags (O, B-TYPE, I-TYPE); convert IOBES/BILOU "
            "tags to BIO (S- -> B-, E-/L- -> I-, U- -> B-) or give bare types a B-/I- prefix"
        )


class LabelMapper:
    """Maps raw label values (names, or integer class indices) to ids, with clear errors."""

    def __init__(self, task: str, labels: list[str], integers_are_indices: bool) -> None:
        self.task = task
        self.labels = labels
        self.ids = {label: index for index, label in enumerate(labels)}
        # Integer values are class indices when they come from a ClassLabel or when the spec
        # names its labels (e.g. SST-2 files store 0/1 for negative/positive).
        self.integers_are_indices = integers_are_indices

    def __call__(self, value: object, where: str) -> int:
        """Return the id of `value`; `where` says which split and row it came from."""
        value = clean_label(value)
        if value is None:
            raise DataError(f"task {self.task!r}, {where}: the label is missing (empty cell)")
        key = str(value)
        if key in self.ids:
            return self.ids[key]
        if self.integers_are_indices and isinstance(value, int) and 0 <= value < len(self.labels):
            return value
        raise DataError(
            f"task {self.task!r}, {where}: label {value!r} is not in the task's label set: "
            f"{', '.join(self.labels)}"
        )


class FloatMapper:
    """Maps a raw regression label (a number, or a string holding one) to a float."""

    def __init__(self, task: str) -> None:
        self.task = task

    def __call__(self, value: object, where: str) -> float:
        """Return `value` as a float; `where` says which split and row it came from."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise DataError(f"task {self.task!r}, {where}: the label is missing (empty cell)")
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if number is None or not math.isfinite(number):
            raise DataError(f"task {self.task!r}, {where}: label {value!r} is not a number")
        return number


class MultiLabelMapper:
    """Maps a multilabel cell (see split_labels) to a multi-hot float vector over the labels."""

    def __init__(self, task: str, labels: list[str], integers_are_indices: bool, separator: str) -> None:
        self.single = LabelMapper(task, labels, integers_are_indices)
        self.separator = separator

    def __call__(self, value: object, where: str) -> list[float]:
        """Return the 0/1 vector of the cell's labels; an unknown label is a DataError."""
        target = [0.0] * len(self.single.labels)
        for label in split_labels(value, self.separator):
            target[self.single(label, where)] = 1.0
        return target


LabelTargets = LabelMapper | FloatMapper | MultiLabelMapper


def build_label_mapper(spec: TaskSpec, train: Dataset, labels: list[str]) -> LabelTargets:
    """The mapper from raw label values to targets for a task whose training split is `train`."""
    if spec.type == "regression":
        return FloatMapper(spec.name)
    indices = spec.labels is not None or _class_label(train, label_column(spec)) is not None
    if spec.type == "multilabel":
        return MultiLabelMapper(spec.name, labels, indices, spec.label_separator)
    return LabelMapper(spec.name, labels, integers_are_indices=indices)
