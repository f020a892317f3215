"""Which task the next batch comes from: a seeded schedule, identical in every process.

Strategies, over each task's sampling size n_i (its batches per epoch, at most `cap` examples' worth):
- proportional: p_i = n_i / sum n (every example equally likely; large tasks dominate);
- temperature: p_i ~ n_i ** (1/T), from proportional (T = 1) towards uniform as T grows;
- uniform: p_i = 1 / k;
- annealed: p_i ~ n_i ** a with the exponent a moving linearly over the run, from 1 (proportional)
  to 1/T (`anneal="up"`, Stickland & Murray 2019), or from 1/T to 1 (`anneal="down"`);
- round_robin: one batch of each task in turn, in the order the tasks are listed.
"""

from __future__ import annotations

import random
from typing import Any

from mtl_nlp.common.choices import SAMPLING_STRATEGIES

ANNEAL_DIRECTIONS = ("up", "down")


def sampling_sizes(
    batches: dict[str, int], examples: dict[str, int], cap: int | None = None
) -> dict[str, float]:
    """Each task's size for sampling: its batches, scaled down to `cap` examples when it has more."""
    if cap is None:
        return {task: float(count) for task, count in batches.items()}
    return {task: count * min(1.0, cap / max(examples[task], 1)) for task, count in batches.items()}


def anneal_exponent(progress: float, temperature: float, direction: str = "up") -> float:
    """The annealed exponent at `progress` (0 = first step, 1 = last): 1 -> 1/T, or 1/T -> 1."""
    if direction not in ANNEAL_DIRECTIONS:
        raise ValueError(f"anneal direction {direction!r} is not one of: {', '.join(ANNEAL_DIRECTIONS)}")
    progress = min(max(progress, 0.0), 1.0)
    start, end = (1.0, 1.0 / temperature) if direction == "up" else (1.0 / temperature, 1.0)
    return start + (end - start) * progress


def task_probabilities(
    sizes: dict[str, float], strategy: str = "proportional", temperature: float = 2.0,
    progress: float = 0.0, anneal: str = "up",
) -> dict[str, float]:
    """Sampling probability of each task from its size; `progress` (0..1) matters for `annealed`.

    round_robin visits the tasks in turn, which over a round is the uniform distribution.
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"sampling strategy {strategy!r} is not one of: {', '.join(SAMPLING_STRATEGIES)}")
    if not sizes or any(size <= 0 for size in sizes.values()):
        raise ValueError(f"every task needs at least one batch, got sizes {sizes}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    exponent = {
        "proportional": 1.0,
        "temperature": 1.0 / temperature,
        "uniform": 0.0,
        "round_robin": 0.0,
    }.get(strategy)
    if exponent is None:
        exponent = anneal_exponent(progress, temperature, anneal)
    weights = {task: float(size) ** exponent for task, size in sizes.items()}
    total = sum(weights.values())
    return {task: weight / total for task, weight in weights.items()}


class TaskSampler:
    """Draws a task name per draw. Processes seeded alike draw the same sequence, so every rank
    of a distributed run trains the same task (and head) at each step.

    `total_draws` (the run's length in draws) lets `annealed` know how far the run has come.
    """

    def __init__(
        self, sizes: dict[str, float], strategy: str = "proportional", temperature: float = 2.0,
        seed: int = 0, anneal: str = "up", total_draws: int = 1,
    ) -> None:
        self.tasks = list(sizes)
        self.sizes = dict(sizes)
        self.strategy, self.temperature, self.anneal = strategy, temperature, anneal
        self.total_draws = max(1, total_draws)
        self.draws = 0
        self.rng = random.Random(seed)
        self._weights = self._weights_at(0)

    def probabilities(self, draw: int | None = None) -> dict[str, float]:
        """The distribution of draw number `draw` (default: the next one)."""
        progress = (self.draws if draw is None else draw) / max(self.total_draws - 1, 1)
        return task_probabilities(self.sizes, self.strategy, self.temperature, progress, self.anneal)

    def _weights_at(self, draw: int) -> list[float]:
        probabilities = self.probabilities(draw)
        return [probabilities[task] for task in self.tasks]

    def __next__(self) -> str:
        if self.strategy == "round_robin":
            task = self.tasks[self.draws % len(self.tasks)]
        else:
            if self.strategy == "annealed":
                self._weights = self._weights_at(self.draws)
            task = self.rng.choices(self.tasks, weights=self._weights)[0]
        self.draws += 1
        return task

    def __iter__(self) -> TaskSampler:
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "draws": self.draws}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rng_state = state["rng"]
        # A state restored from a checkpoint may come back with lists where tuples were.
        self.rng.setstate((rng_state[0], tuple(rng_state[1]), rng_state[2]))
        self.draws = state.get("draws", 0)
