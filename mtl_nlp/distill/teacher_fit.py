"""How well a teacher's cached outputs fit the gold labels they are mixed with, and how sure they are.

A teacher trained too briefly can pick the gold label of most of its training rows while spreading
its probability thinly: after one epoch the 77-way banking77 teacher of the intent mix was right on
68% of its rows with a mean top probability of 0.125 (GLUE's teachers, after three epochs: within
0.15 of their agreement). Teacher annealing starts the student on such outputs alone, and that
student (with layer-wise decay) scored 13 points below the plain one model on banking77 over 3
seeds; sharpening the outputs with a lower distill.temperature did not make up for it
(BENCHMARKS.md). The fit is logged before training, with a warning for a teacher that looks
undertrained, and recorded beside the cached outputs.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from datasets import Dataset

from mtl_nlp.common.tokenizing import IGNORE_INDEX
from mtl_nlp.data.teacher_columns import TEACHER_COLUMN, teacher_tensor

logger = logging.getLogger(__name__)

FITTED_TYPES = ("classification", "token_classification", "multiple_choice")  # class scores
# a teacher whose mean top probability is under this share of its agreement with the gold labels
# teaches near-uniform targets
UNSURE_SHARE = 0.5


def teacher_fit(
    rows: Dataset, head_types: dict[str, str], entry: bool, temperature: float, batch_rows: int = 1024
) -> dict[str, dict[str, float]]:
    """{head: {"agreement": the share of gold-labelled rows (tagging: word starts) where the
    teacher's top class is the gold label, "confidence": the teacher's mean top probability at
    `temperature` there, "scored": how many}} for the single-label and tagging heads of `rows`, a
    training split carrying `labels` and the `teacher` column."""
    totals = {head: [0, 0.0, 0] for head, kind in head_types.items() if kind in FITTED_TYPES}
    rows = rows.select_columns(["labels", TEACHER_COLUMN])  # the inputs are not decoded
    for begin in range(0, len(rows), batch_rows):
        batch = rows[begin : begin + batch_rows]
        for head in totals:
            teacher = [row[head] for row in batch[TEACHER_COLUMN]] if entry else batch[TEACHER_COLUMN]
            labels = [row[head] for row in batch["labels"]] if entry else batch["labels"]
            _add(totals[head], teacher, labels, head_types[head], temperature)
    return {head: {"agreement": agreed / scored if scored else float("nan"),
                   "confidence": confidence / scored if scored else float("nan"), "scored": scored}
            for head, (agreed, confidence, scored) in totals.items()}


def _add(total: list, teacher: list[Any], labels: list[Any], head_type: str, temperature: float) -> None:
    """Add one batch's agreeing rows, summed top probability and scored rows to `total`."""
    if head_type == "token_classification":
        length = max(len(row) for row in labels)
        scores = teacher_tensor(teacher, head_type, length, "right")
        gold = torch.full((len(labels), length), IGNORE_INDEX)
        for index, row in enumerate(labels):
            gold[index, : len(row)] = torch.tensor(row)
        scores, gold = scores.reshape(-1, scores.shape[-1]), gold.reshape(-1)
    else:
        scores, gold = teacher_tensor(teacher, head_type, 0, "right"), torch.tensor(labels)
    scored = (gold != IGNORE_INDEX) & ~torch.isnan(scores).any(dim=-1)
    scores, gold = scores[scored], gold[scored]
    probabilities = torch.softmax(scores / temperature, dim=-1)
    total[0] += int((probabilities.argmax(dim=-1) == gold).sum())
    total[1] += float(probabilities.max(dim=-1).values.sum())
    total[2] += int(scored.sum())


def report_fit(task: str, fit: dict[str, dict[str, float]], temperature: float) -> None:
    """Log each head's fit; warn where the teacher's outputs are near uniform for its accuracy."""
    for head, figures in fit.items():
        agreement, confidence = figures["agreement"], figures["confidence"]
        logger.info("task %s: the teacher of %s picks the gold label of %.1f%% of %d training rows, "
                    "its top probability %.3f on average", task, head, 100 * agreement, figures["scored"],
                    confidence)
        if confidence < UNSURE_SHARE * agreement:
            logger.warning(
                "task %s: the teacher of %s is right on %.1f%% of its training rows but its top "
                "probability averages only %.3f (distill.temperature %g): it looks undertrained, and its "
                "near-uniform outputs outweigh the gold labels early in the run; train it longer before "
                "distilling (a lower distill.temperature did not make up for it where measured)",
                task, head, 100 * agreement, confidence, temperature)
