"""Where a run stands (saved with the resumable state) and the running losses it shows."""

from __future__ import annotations

import math
import resource
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class TrainingProgress:
    """Where a run stands; saved with the Accelerate state so a resumed run continues exactly."""

    step: int = 0
    best_score: float = -math.inf
    best_step: int = -1
    real_tokens: int = 0  # non-padding tokens the encoder processed
    padded_tokens: int = 0  # all tokens the encoder processed, padding included
    train_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # validation scores by step
    loss_history: list[dict[str, Any]] = field(default_factory=list)  # running losses, weights
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # gradient cosines by step
    stopped_early: int | None = None  # the step at which early stopping ended the run

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class RunningLoss:
    """Exponential moving average of each task's loss, for the progress bar and loss curves.

    Losses arrive as tensors and are read only when the bar is refreshed, so a GPU run does not
    wait for every step to finish just to print a number.
    """

    def __init__(self, decay: float = 0.9) -> None:
        self.decay = decay
        self.values: dict[str, float] = {}
        self.pending: list[tuple[str, torch.Tensor]] = []

    def update(self, task: str, loss: torch.Tensor) -> None:
        self.pending.append((task, loss.detach()))

    def read(self) -> dict[str, float]:
        """The current running loss of every task seen so far."""
        for task, loss in self.pending:
            value, previous = loss.item(), self.values.get(task)
            if previous is not None:
                value = self.decay * previous + (1 - self.decay) * value
            self.values[task] = value
        self.pending.clear()
        return dict(sorted(self.values.items()))

    def postfix(self) -> dict[str, str]:
        return {task: f"{value:.3f}" for task, value in self.read().items()}


def peak_memory_mb() -> float:
    """Peak GPU memory allocated by torch, or on CPU the peak resident memory of this process."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
