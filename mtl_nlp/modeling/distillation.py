"""Distillation losses: each head type's loss against its gold labels mixed with a teacher's outputs.

A head learns from `gold_weight` x the gold labels plus (1 - gold_weight) x the teacher's outputs
(BAM!, Clark et al. 2019; teacher annealing moves gold_weight from 0 to 1 over a run). At
gold_weight 1 every loss equals the head's own loss. The teacher's outputs are its raw logits (a
regression teacher's values), in the student's label order; teacher probabilities are
softmax(logits / temperature) (sigmoid per label for multilabel). Positions and rows the teacher
did not score (NaN) learn from their gold labels alone. A multiple-choice head is a single-label
head whose classes are each example's options (its teacher scores the options a padded example
lacks -inf: no probability, as the student's own scores of them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl_nlp.common.tokenizing import IGNORE_INDEX


def _soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of each row of `logits` against a target distribution, [rows]."""
    return -(targets * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1)


def _mixed_class_targets(labels: Tensor, teacher: Tensor, gold_weight: float, temperature: float) -> Tensor:
    """gold_weight x one-hot(labels) + (1 - gold_weight) x softmax(teacher / T), per row; rows
    whose teacher output is missing (NaN) keep their one-hot gold."""
    classes = teacher.shape[-1]
    gold = F.one_hot(labels.clamp(min=0), classes).float()
    known = ~torch.isnan(teacher).any(dim=-1, keepdim=True)
    soft = torch.softmax(torch.nan_to_num(teacher.float()) / temperature, dim=-1)
    mixed = gold_weight * gold + (1.0 - gold_weight) * soft
    return torch.where(known, mixed, gold)


def classification_loss(
    logits: Tensor, labels: Tensor, teacher: Tensor, gold_weight: float, temperature: float
) -> Tensor:
    """Single-label: cross-entropy against the mixed targets, averaged over rows with a gold label."""
    scored = labels != IGNORE_INDEX
    targets = _mixed_class_targets(labels, teacher, gold_weight, temperature)
    losses = _soft_cross_entropy(logits, targets)
    return (losses * scored).sum() / scored.sum().clamp(min=1)


def token_classification_loss(
    logits: Tensor, labels: Tensor, teacher: Tensor, gold_weight: float, temperature: float
) -> Tensor:
    """Tagging: per scored position, cross-entropy against the mixed targets (the teacher's
    distribution for its word's first token, NaN where it has none), averaged over scored positions."""
    return classification_loss(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), teacher.reshape(-1, teacher.shape[-1]),
        gold_weight, temperature,
    )


def multilabel_loss(
    logits: Tensor, labels: Tensor, teacher: Tensor, gold_weight: float, temperature: float
) -> Tensor:
    """Multilabel: binary cross-entropy against gold_weight x multi-hot + (1 - gold_weight) x the
    teacher's per-label probabilities."""
    known = ~torch.isnan(teacher).any(dim=-1, keepdim=True)
    soft = torch.sigmoid(torch.nan_to_num(teacher.float()) / temperature)
    targets = torch.where(known, gold_weight * labels.float() + (1.0 - gold_weight) * soft, labels.float())
    return F.binary_cross_entropy_with_logits(logits.float(), targets)


def regression_loss(
    logits: Tensor, labels: Tensor, teacher: Tensor, gold_weight: float, temperature: float
) -> Tensor:
    """Regression: squared error against gold_weight x gold + (1 - gold_weight) x the teacher's value
    (the temperature does not apply to a value)."""
    values = teacher.float().reshape(labels.shape)
    targets = torch.where(torch.isnan(values), labels.float(),
                          gold_weight * labels.float() + (1.0 - gold_weight) * values)
    return F.mse_loss(logits.float(), targets)


DISTILLATION_LOSSES = {
    "classification": classification_loss,
    # an example's options are its classes; the teacher's scores of options it lacks are -inf
    "multiple_choice": classification_loss,
    "token_classification": token_classification_loss,
    "multilabel": multilabel_loss,
    "regression": regression_loss,
}


def distillation_loss(
    head_type: str, logits: Tensor, labels: Tensor, teacher: Tensor, gold_weight: float, temperature: float
) -> Tensor:
    """The loss of a head of `head_type` against its gold labels and its teacher's outputs."""
    return DISTILLATION_LOSSES[head_type](logits, labels, teacher, gold_weight, temperature)
