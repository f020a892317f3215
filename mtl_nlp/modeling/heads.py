"""Task heads on top of the shared encoder's hidden states."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mtl_nlp.registry import POOLINGS


@dataclass
class HeadConfig:
    """What a checkpoint records about one task head; enough to rebuild it."""

    name: str
    type: str  # classification | token_classification
    labels: list[str] = field(default_factory=list)
    dropout: float = 0.1
    pooling: str = "mean"  # classification only: mean of token states, or the first token

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SequenceClassificationHead(nn.Module):
    """Pooled sentence representation -> dropout -> linear."""

    def __init__(self, hidden_size: int, config: HeadConfig) -> None:
        super().__init__()
        if config.pooling not in POOLINGS:
            raise ValueError(f"head {config.name!r}: pooling {config.pooling!r} not in {POOLINGS}")
        self.pooling = config.pooling
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(hidden_size, len(config.labels))

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.classifier(self.dropout(pooled))


class TokenClassificationHead(nn.Module):
    """Per-token hidden state -> dropout -> linear."""

    def __init__(self, hidden_size: int, config: HeadConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(hidden_size, len(config.labels))

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        return self.classifier(self.dropout(hidden))


HEAD_TYPES: dict[str, type[nn.Module]] = {
    "classification": SequenceClassificationHead,
    "token_classification": TokenClassificationHead,
}


def build_head(hidden_size: int, config: HeadConfig) -> nn.Module:
    """The head module for `config.type`."""
    if config.type not in HEAD_TYPES:
        raise ValueError(
            f"head {config.name!r}: type {config.type!r} is not one of: {', '.join(HEAD_TYPES)}"
        )
    if not config.labels:
        raise ValueError(f"head {config.name!r} has no labels")
    return HEAD_TYPES[config.type](hidden_size, config)


def logits_to_probabilities(logits: Tensor) -> Tensor:
    """Softmax in float32 (logits may be bf16 under autocast)."""
    return torch.softmax(logits.float(), dim=-1)
