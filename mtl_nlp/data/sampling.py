"""Which task the next batch comes from: a seeded draw, identical in every process."""

from __future__ import annotations

import random
from typing import Any

STRATEGIES = ("proportional", "temperature", "uniform")


def task_probabilities(
    sizes: dict[str, int], strategy: str = "proportional", temperature: float = 2.0
) -> dict[str, float]:
    """Sampling probability of each task from its size (batches per epoch).

    proportional: p_i = n_i / sum n; uniform: p_i = 1 / k; temperature: p_i ~ n_i ** (1 / T),
    which moves from proportional (T = 1) towards uniform as T grows.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"sampling strategy {strategy!r} is not one of: {', '.join(STRATEGIES)}")
    if not sizes or any(size <= 0 for size in sizes.values()):
        raise ValueError(f"every task needs at least one batch, got sizes {sizes}")
    if strategy == "uniform":
        weights = {task: 1.0 for task in sizes}
    elif strategy == "proportional":
        weights = {task: float(size) for task, size in sizes.items()}
    else:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        weights = {task: size ** (1.0 / temperature) for task, size in sizes.items()}
    total = sum(weights.values())
    return {task: weight / total for task, weight in weights.items()}


class TaskSampler:
    """Draws a task name per step. Processes seeded alike draw the same sequence, so every rank
    of a distributed run trains the same task (and head) at each step."""

    def __init__(self, probabilities: dict[str, float], seed: int = 0) -> None:
        self.tasks = list(probabilities)
        self.weights = [probabilities[task] for task in self.tasks]
        self.rng = random.Random(seed)

    def __next__(self) -> str:
        return self.rng.choices(self.tasks, weights=self.weights)[0]

    def __iter__(self) -> TaskSampler:
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rng_state = state["rng"]
        # A state restored from a checkpoint may come back with lists where tuples were.
        self.rng.setstate((rng_state[0], tuple(rng_state[1]), rng_state[2]))
