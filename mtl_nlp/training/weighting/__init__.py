"""Loss balancing and gradient surgery, one small class per method, chosen by name.

The training loop calls the LossWeighting interface only (weigh, observe, end_step, combine) and
never branches on the method's name.
"""

from __future__ import annotations

from mtl_nlp.config import WEIGHTING_METHODS, WeightingConfig
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


def build_weighting(
    config: WeightingConfig, sizes: dict[str, int], loss_weights: dict[str, float], seed: int = 0
) -> LossWeighting:
    """The method `config.method` for tasks with `sizes` training examples (in task order)."""
    tasks = list(sizes)
    builders = {
        "equal": lambda: EqualWeighting(tasks, loss_weights),
        "log_size": lambda: LogSizeWeighting(tasks, sizes, loss_weights),
        "uncertainty": lambda: UncertaintyWeighting(tasks, loss_weights),
        "dwa": lambda: DynamicWeightAverage(tasks, config.window, config.temperature, loss_weights),
        "rlw": lambda: RandomLossWeighting(tasks, seed, loss_weights),
        "pcgrad": lambda: PCGrad(tasks, seed, loss_weights),
        "cagrad": lambda: CAGrad(tasks, config.cagrad_c, loss_weights),
    }
    if config.method not in builders:
        raise ValueError(f"weighting method {config.method!r} is not one of: {', '.join(WEIGHTING_METHODS)}")
    return builders[config.method]()


__all__ = [
    "CAGrad",
    "DynamicWeightAverage",
    "EqualWeighting",
    "LogSizeWeighting",
    "LossWeighting",
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
