"""The teacher outputs a distilled task's training rows carry, and how a batch of them is padded.

A training row of a task with a teacher has a `teacher` column (mtl_nlp.distill.teacher_outputs
writes it): the teacher's logits in the student's label order, one row per text (a regression
teacher's value as a row of one; a multiple-choice teacher's: its score of each of the example's
options), or for a tagging head one row per token of the student's tokenization, NaN except at
each word's first token. An entry of several heads holds
{head: that} for each head with a teacher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

TEACHER_COLUMN = "teacher"


def teacher_tensor(rows: list[Any], head_type: str, length: int, padding_side: str) -> torch.Tensor:
    """One head's teacher outputs of a batch: [batch, outputs] ([batch] for regression; for multiple
    choice [batch, the most options], -inf for the options an example lacks), or for tagging
    [batch, length, labels] with NaN rows at padding."""
    if head_type == "multiple_choice":  # -inf: the padded options get no probability (not NaN: unscored)
        values = torch.full((len(rows), max(len(row) for row in rows)), float("-inf"))
        for index, row in enumerate(rows):
            values[index, : len(row)] = torch.tensor(row, dtype=torch.float32)
        return values
    if head_type != "token_classification":
        values = torch.tensor(rows, dtype=torch.float32)
        return values.squeeze(-1) if head_type == "regression" else values
    labels = len(rows[0][0])
    padded = torch.full((len(rows), length, labels), float("nan"))
    for index, row in enumerate(rows):
        if not row:
            continue
        values = torch.tensor(row, dtype=torch.float32)
        if padding_side == "left":
            padded[index, length - len(row):] = values
        else:
            padded[index, : len(row)] = values
    return padded


class TeacherCollator:
    """Wraps a task's collator: the inputs and labels as it pads them, and `teacher` as a tensor
    (a task of one head) or {head: tensor} (an entry), padded as `teacher_tensor` says."""

    def __init__(self, collate: Callable[[list[dict[str, Any]]], dict[str, Any]], head_types: dict[str, str],
                 entry: bool, padding_side: str = "right") -> None:
        self.collate, self.head_types, self.entry = collate, head_types, entry
        self.padding_side = padding_side

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        teachers = [feature[TEACHER_COLUMN] for feature in features]
        inputs = [{key: value for key, value in feature.items() if key != TEACHER_COLUMN}
                  for feature in features]
        batch = self.collate(inputs)
        length = batch["input_ids"].shape[1]
        if not self.entry:
            (head_type,) = self.head_types.values()
            batch[TEACHER_COLUMN] = teacher_tensor(teachers, head_type, length, self.padding_side)
        else:
            batch[TEACHER_COLUMN] = {
                head: teacher_tensor([row[head] for row in teachers], head_type, length, self.padding_side)
                for head, head_type in self.head_types.items()
            }
        return batch
