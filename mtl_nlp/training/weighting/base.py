"""The interface every loss-balancing method implements; the training loop only calls this."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

Reduce = Callable[[Tensor], Tensor]  # sums a tensor over every process (identity in one process)


class LossWeighting(nn.Module):
    """How the tasks' losses (or gradients) combine into one update.

    Loss methods turn a task's loss into the loss that is backpropagated (`weigh`). Gradient
    methods (`needs_task_gradients`) also receive the Gram matrix of the tasks' gradients on the
    shared parameters and return one coefficient per task (`combine`): the shared update is
    sum_t coefficient_t * g_t, and heads keep their own gradients. Learned or moving weights live
    in the module's state (saved with the resumable training state).

    `loss_weights` are the task entries' static `loss_weight`s, which multiply every method.
    """

    needs_task_gradients = False

    def __init__(self, tasks: list[str], loss_weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.index = {task: i for i, task in enumerate(self.tasks)}
        self.loss_weights = {task: (loss_weights or {}).get(task, 1.0) for task in self.tasks}
        self.coefficients: list[float] | None = None  # gradient methods: the last combination

    def remember(self, coefficients: Tensor) -> Tensor:
        """Keep a gradient method's last coefficients, which `current_weights` then reports."""
        self.coefficients = [float(value) for value in coefficients]
        return coefficients

    def weight(self, task: str) -> float:
        """The current multiplier of `task`'s loss (static loss_weight included)."""
        return self.loss_weights[task]

    def weigh(self, task: str, loss: Tensor) -> Tensor:
        """The loss to backpropagate for one batch of `task`."""
        return self.weight(task) * loss

    def observe(self, task: str, loss: Tensor) -> None:
        """Record a batch's (unweighted, detached) loss; methods that track losses override."""

    def end_step(self, step: int, reduce: Reduce) -> None:
        """Called after every optimizer step; `reduce` sums tensors over the processes."""

    def combine(self, gram: Tensor) -> Tensor:
        """Coefficients of the tasks' shared gradients; the default adds them (equal weights)."""
        return torch.ones(len(self.tasks), dtype=gram.dtype)

    def current_weights(self) -> dict[str, float]:
        """Each task's current loss multiplier (for gradient methods, times the coefficient of its
        gradient in the last combined update), for logging."""
        weights = {task: float(self.weight(task)) for task in self.tasks}
        if self.coefficients is not None:
            weights = {task: weights[task] * c for task, c in zip(self.tasks, self.coefficients)}
        return weights
