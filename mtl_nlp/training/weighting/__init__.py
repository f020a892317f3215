"""Loss balancing and gradient surgery, one small class per method, chosen by name.

The training loop calls the LossWeighting interface only (weigh, observe, end_step, combine) and
never branches on the method's name.
"""

from __future__ import annotations

from collections.abc import Callable

from mtl_nlp.common.choices import WEIGHTING_METHODS
from mtl_nlp.config import WeightingConfig
from mtl_nlp.training.weighting.base import LossWeighting
from mtl_nlp.training.weighting.gradient_methods import (
    CAGrad,
    PCGrad,
    cagrad_coefficients,
    pcgrad_coefficients,
)
from mtl_nlp.training.weighting.gradients import TaskGradients, cosine_matrix
from mtl_nlp.training.weighting.loss_methods import (
    DynamicWeightAverage,
    EqualWeighting,
    LogSizeWeighting,
    RandomLossWeighting,
    UncertaintyWeighting,
    dwa_weights,
)

# Each method of common.choices.WEIGHTING_METHODS: (config, tasks, sizes, loss_weights, seed) -> method.
METHODS: dict[str, Callable[..., LossWeighting]] = {
    "equal": lambda config, tasks, sizes, weights, seed: EqualWeighting(tasks, weights),
    "log_size": lambda config, tasks, sizes, weights, seed: LogSizeWeighting(tasks, sizes, weights),
    "uncertainty": lambda config, tasks, sizes, weights, seed: UncertaintyWeighting(tasks, weights),
    "dwa": lambda config, tasks, sizes, weights, seed: DynamicWeightAverage(
        tasks, config.window, config.temperature, weights),
    "rlw": lambda config, tasks, sizes, weights, seed: RandomLossWeighting(tasks, seed, weights),
    "pcgrad": lambda config, tasks, sizes, weights, seed: PCGrad(tasks, seed, weights),
    "cagrad": lambda config, tasks, sizes, weights, seed: CAGrad(tasks, config.cagrad_c, weights),
}


def build_weighting(
    config: WeightingConfig, sizes: dict[str, int], loss_weights: dict[str, float], seed: int = 0
) -> LossWeighting:
    """The method `config.method` for tasks with `sizes` training examples (in task order)."""
    if config.method not in METHODS:
        raise ValueError(f"weighting method {config.method!r} is not one of: {', '.join(WEIGHTING_METHODS)}")
    return METHODS[config.method](config, list(sizes), sizes, loss_weights, seed)


__all__ = [
    "CAGrad",
    "DynamicWeightAverage",
    "EqualWeighting",
    "LogSizeWeighting",
    "LossWeighting",
    "METHODS",
    "PCGrad",
    "RandomLossWeighting",
    "TaskGradients",
    "UncertaintyWeighting",
    "build_weighting",
    "cagrad_coefficients",
    "cosine_matrix",
    "dwa_weights",
    "pcgrad_coefficients",
]
