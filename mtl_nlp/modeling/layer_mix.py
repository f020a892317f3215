"""A head's learned mix of every encoder layer (ELMo's scalar mix, as multi-task parsers use).

A head with `layer_mix` reads gamma x sum_l softmax(w)_l x h_l over the embeddings' output and
every layer's, instead of the top layer only: a task that leans on lower layers (CoLA's syntax)
keeps what the mix of tasks overwrites at the top. The layers come from the one encoder pass every
head shares.

The mix starts at the top layer (TOP_SHARE of it, the rest spread evenly), so a head starts
reading what a head without a mix reads (a pooler head the pretrained pooler's input): an even
start, ELMo's, averages the embeddings into every head, and cost GLUE's pair tasks 9 to 13 points
on one seed (BENCHMARKS.md). Its weights learn at a rate of their own (training.optim: MIX_LR), since a few
scalars at a fine-tuning rate barely move in a run.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

TOP_SHARE = 0.9  # the top layer's share of a new mix


class ScalarMix(nn.Module):
    """gamma x softmax(weights)-weighted sum of `count` stacked hidden states [count, ...]."""

    def __init__(self, count: int) -> None:
        super().__init__()
        weights = torch.zeros(count)
        if count > 1:  # exp(w_top) / (exp(w_top) + count - 1) = TOP_SHARE
            weights[-1] = math.log(TOP_SHARE * (count - 1) / (1 - TOP_SHARE))
        self.weights = nn.Parameter(weights)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, states: Tensor) -> Tensor:
        if states.shape[0] != self.weights.shape[0]:
            raise ValueError(f"a mix of {self.weights.shape[0]} layers got {states.shape[0]} hidden states")
        shares = torch.softmax(self.weights.float(), dim=0).to(states.dtype)
        return self.scale.to(states.dtype) * torch.tensordot(shares, states, dims=([0], [0]))

    def layer_shares(self) -> list[float]:
        """Each layer's share of the mix (embeddings first), for reports."""
        return torch.softmax(self.weights.detach().float(), dim=0).tolist()
