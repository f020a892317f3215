"""A head's learned mix of every encoder layer (ELMo's scalar mix, as multi-task parsers use).

A head with `layer_mix` reads gamma x sum_l softmax(w)_l x h_l over the embeddings' output and
every layer's, instead of the top layer only: a task that leans on lower layers (CoLA's syntax)
keeps what the mix of tasks overwrites at the top. The weights start equal (w = 0, gamma = 1).
The layers come from the one encoder pass every head shares.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ScalarMix(nn.Module):
    """gamma x softmax(weights)-weighted sum of `count` stacked hidden states [count, ...]."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(count))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, states: Tensor) -> Tensor:
        if states.shape[0] != self.weights.shape[0]:
            raise ValueError(f"a mix of {self.weights.shape[0]} layers got {states.shape[0]} hidden states")
        shares = torch.softmax(self.weights.float(), dim=0).to(states.dtype)
        return self.scale.to(states.dtype) * torch.tensordot(shares, states, dims=([0], [0]))

    def layer_shares(self) -> list[float]:
        """Each layer's share of the mix (embeddings first), for reports."""
        return torch.softmax(self.weights.detach().float(), dim=0).tolist()
