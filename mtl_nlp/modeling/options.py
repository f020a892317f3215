"""Multiple-choice inputs: an example's options are rows of one encoder pass, and their scores are
arranged back into [batch, options], options an example lacks masked out."""

from __future__ import annotations

import torch
from torch import Tensor


def option_rows(
    input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None, choice_mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Multiple-choice inputs [batch, options, length] as rows [batch x options, length], and the
    options mask (every option present when none is given; [batch, length] inputs: one option
    per example)."""
    if input_ids.dim() == 2:
        input_ids, attention_mask = input_ids.unsqueeze(1), attention_mask.unsqueeze(1)
        token_type_ids = None if token_type_ids is None else token_type_ids.unsqueeze(1)
    if choice_mask is None:
        choice_mask = torch.ones(input_ids.shape[:2], dtype=torch.long, device=input_ids.device)
    length = input_ids.shape[-1]
    flat = None if token_type_ids is None else token_type_ids.reshape(-1, length)
    return input_ids.reshape(-1, length), attention_mask.reshape(-1, length), flat, choice_mask


def option_scores(row_scores: Tensor, choice_mask: Tensor) -> Tensor:
    """[batch, options] scores from one score per row (the options of each example in turn, padded
    to the batch's most); options that `choice_mask` marks absent (0) get the lowest value, so that
    no softmax gives them weight and no argmax picks them."""
    scores = row_scores.view(choice_mask.shape)
    return scores.masked_fill(choice_mask == 0, torch.finfo(scores.dtype).min)
