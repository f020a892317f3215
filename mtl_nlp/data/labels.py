"""A task's label set and the mapping from raw label values to ids."""

from __future__ import annotations

import math

from datasets import ClassLabel, Dataset, Sequence

from mtl_nlp.data.loading import DataError
from mtl_nlp.registry import TaskSpec


def label_column(spec: TaskSpec) -> str:
    """The column that holds the task's targets."""
    return spec.tags_column if spec.type == "token_classification" else spec.label_column


def _class_label(dataset: Dataset, column: str) -> ClassLabel | None:
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


def resolve_labels(spec: TaskSpec, train: Dataset) -> list[str]:
    """The task's labels: `spec.labels`, else ClassLabel names, else sorted training labels."""
    if spec.labels is not None:
        return list(spec.labels)
    column = label_column(spec)
    class_label = _class_label(train, column)
    if class_label is not None:
        return list(class_label.names)
    values = train[column]
    if spec.type == "token_classification":
        values = [tag for tags in values for tag in tags]
    cleaned = (clean_label(value) for value in values)
    return sorted({str(value) for value in cleaned if value is not None})


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


def build_label_mapper(spec: TaskSpec, train: Dataset, labels: list[str]) -> LabelMapper:
    """The mapper for a task whose training split is `train`."""
    indices = spec.labels is not None or _class_label(train, label_column(spec)) is not None
    return LabelMapper(spec.name, labels, integers_are_indices=indices)
