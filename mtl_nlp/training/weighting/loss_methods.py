"""Loss-balancing methods: each scales a task's loss before it is backpropagated.

Weights are normalised so that equal weights are 1 per task: a method changes the balance
between tasks, not the overall step size that the learning rate was tuned for.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mtl_nlp.training.weighting.base import LossWeighting, Reduce


class EqualWeighting(LossWeighting):
    """Every task's loss counts once (times its entry's static `loss_weight`)."""


class LogSizeWeighting(LossWeighting):
    """w_t = T * log(1 + n_t) / sum_s log(1 + n_s), n_t the task's training examples: larger
    tasks weigh more, but only logarithmically."""

    def __init__(self, tasks: list[str], sizes: dict[str, int], loss_weights=None) -> None:
        super().__init__(tasks, loss_weights)
        logs = {task: math.log1p(sizes[task]) for task in self.tasks}
        total = sum(logs.values())
        self.size_weights = {task: len(self.tasks) * value / total for task, value in logs.items()}

    def weight(self, task: str) -> float:
        return self.loss_weights[task] * self.size_weights[task]


class UncertaintyWeighting(LossWeighting):
    """Kendall, Gal & Cipolla 2018: a learned log-variance s_t per task and the loss
    exp(-s_t) * L_t + s_t. With one task per batch only that task's s_t receives a gradient."""

    def __init__(self, tasks: list[str], loss_weights=None) -> None:
        super().__init__(tasks, loss_weights)
        self.log_variances = nn.Parameter(torch.zeros(len(self.tasks)))

    def weigh(self, task: str, loss: Tensor) -> Tensor:
        s = self.log_variances[self.index[task]]
        return torch.exp(-s) * self.loss_weights[task] * loss + s

    def weight(self, task: str) -> float:
        return self.loss_weights[task] * math.exp(-float(self.log_variances[self.index[task]].detach()))


class DynamicWeightAverage(LossWeighting):
    """Liu, Johns & Davison 2019 (DWA), on windows of `window` optimizer steps instead of epochs:
    w_t = T * softmax_t(r_t / temperature), r_t = mean loss of task t in the last window divided
    by its mean loss in the window before. Weights stay 1 until two windows have passed; a task
    not seen in a window keeps its previous mean."""

    def __init__(self, tasks: list[str], window: int, temperature: float, loss_weights=None) -> None:
        super().__init__(tasks, loss_weights)
        self.window, self.temperature = window, temperature
        count = len(self.tasks)
        self.register_buffer("window_sum", torch.zeros(count, dtype=torch.float64))
        self.register_buffer("window_count", torch.zeros(count, dtype=torch.float64))
        self.register_buffer("previous", torch.full((count,), math.nan, dtype=torch.float64))
        self.register_buffer("last", torch.full((count,), math.nan, dtype=torch.float64))
        self.register_buffer("dwa_weights", torch.ones(count, dtype=torch.float64))

    def observe(self, task: str, loss: Tensor) -> None:
        index = self.index[task]
        self.window_sum[index] += float(loss)
        self.window_count[index] += 1

    def end_step(self, step: int, reduce: Reduce) -> None:
        if step % self.window:
            return
        sums, counts = reduce(self.window_sum.clone()), reduce(self.window_count.clone())
        means = torch.where(counts > 0, sums / counts.clamp(min=1), self.last)
        self.previous.copy_(self.last)
        self.last.copy_(means)
        self.window_sum.zero_()
        self.window_count.zero_()
        ratios = self.last / self.previous
        if torch.isfinite(ratios).all():
            self.dwa_weights.copy_(dwa_weights(ratios, self.temperature))

    def weight(self, task: str) -> float:
        return self.loss_weights[task] * float(self.dwa_weights[self.index[task]])


def dwa_weights(ratios: Tensor, temperature: float) -> Tensor:
    """T * softmax(ratios / temperature): the DWA formula on loss ratios."""
    return len(ratios) * torch.softmax(ratios / temperature, dim=0)


class RandomLossWeighting(LossWeighting):
    """Lin et al. 2022 (RLW): fresh random weights every step, w = T * softmax(z), z ~ N(0, I).
    Drawn from a seeded generator, so every process draws the same weights."""

    def __init__(self, tasks: list[str], seed: int = 0, loss_weights=None) -> None:
        super().__init__(tasks, loss_weights)
        self.generator = torch.Generator().manual_seed(seed)
        self.register_buffer("rlw_weights", self._draw())

    def _draw(self) -> Tensor:
        z = torch.randn(len(self.tasks), generator=self.generator, dtype=torch.float64)
        return len(self.tasks) * torch.softmax(z, dim=0)

    def end_step(self, step: int, reduce: Reduce) -> None:
        self.rlw_weights.copy_(self._draw())

    def weight(self, task: str) -> float:
        return self.loss_weights[task] * float(self.rlw_weights[self.index[task]])

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
