"""Gradient surgery on the tasks' shared-parameter gradients, computed from their Gram matrix.

Both methods return coefficients w with the shared update sum_t w_t g_t: every projection or
mix of the g_t is itself a linear combination of them, so a T x T Gram matrix (g_s . g_t) is all
the arithmetic needs. No T x P work beyond the Gram matrix and one weighted sum, and no extra
backward passes.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import Tensor

from mtl_nlp.training.weighting.base import LossWeighting


def pcgrad_coefficients(gram: Tensor, orders: list[list[int]]) -> Tensor:
    """PCGrad (Yu et al. 2020) in coefficient space.

    For each task i, g_i' starts as g_i and, for every other task j in `orders[i]`, loses its
    component along g_j when they conflict (g_i' . g_j < 0): g_i' -= (g_i' . g_j / |g_j|^2) g_j.
    The update is sum_i g_i'. Each g_i' is tracked as coefficients c with g_i' = sum_k c_k g_k,
    so g_i' . g_j = c . gram[:, j].
    """
    gram = gram.double()
    count = gram.shape[0]
    total = torch.zeros(count, dtype=torch.float64)
    for i in range(count):
        coefficients = torch.zeros(count, dtype=torch.float64)
        coefficients[i] = 1.0
        for j in orders[i]:
            dot = float(coefficients @ gram[:, j])
            norm = float(gram[j, j])
            if dot < 0 and norm > 0:
                coefficients[j] -= dot / norm
        total += coefficients
    return total


def project_to_simplex(vector: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {x >= 0, sum x = 1} (Duchi et al. 2008)."""
    ordered = np.sort(vector)[::-1]
    cumulative = np.cumsum(ordered) - 1.0
    ranks = np.arange(1, len(vector) + 1)
    rho = np.nonzero(ordered - cumulative / ranks > 0)[0][-1]
    return np.maximum(vector - cumulative[rho] / (rho + 1), 0.0)


def cagrad_simplex_weights(gram: np.ndarray, c: float, iterations: int = 500) -> np.ndarray:
    """argmin over the simplex of x.A.b + c * sqrt(x.A.x), b = (1/T, ..., 1/T): CAGrad's inner
    problem (projected gradient descent with backtracking; convex, T is small)."""
    count = gram.shape[0]
    b = np.full(count, 1.0 / count)
    ab = gram @ b

    def objective(x: np.ndarray) -> float:
        return float(x @ ab + c * math.sqrt(max(x @ gram @ x, 0.0) + 1e-12))

    x, step = b.copy(), 1.0
    value = objective(x)
    for _ in range(iterations):
        gradient = ab + c * (gram @ x) / math.sqrt(max(x @ gram @ x, 0.0) + 1e-12)
        while step > 1e-12:
            candidate = project_to_simplex(x - step * gradient)
            candidate_value = objective(candidate)
            if candidate_value <= value - 1e-4 * (gradient @ (x - candidate)):
                break
            step /= 2
        if step <= 1e-12 or np.abs(candidate - x).max() < 1e-10:
            break
        x, value, step = candidate, candidate_value, step * 2
    return x


def cagrad_coefficients(gram: Tensor, alpha: float) -> Tensor:
    """CAGrad (Liu et al. 2021): the update g0 + (c / |g_w|) g_w, with g0 the mean gradient,
    c = alpha * |g0| and w the simplex weights above, divided by (1 + alpha^2) as in the authors'
    code, and multiplied by T so that aligned tasks get the scale of the sum of their gradients.
    """
    count = gram.shape[0]
    matrix = gram.double().numpy()
    # Normalising the matrix changes neither the minimiser nor the coefficients below.
    scale = max(float(np.trace(matrix)) / count, 1e-30)
    matrix = matrix / scale
    g0_norm = math.sqrt(max(matrix.mean(), 0.0))
    c = alpha * g0_norm
    x = cagrad_simplex_weights(matrix, c)
    gw_norm = math.sqrt(max(x @ matrix @ x, 0.0))
    lam = c / gw_norm if gw_norm > 1e-12 else 0.0
    coefficients = (np.full(count, 1.0 / count) + lam * x) / (1 + alpha**2)
    return torch.from_numpy(count * coefficients)


class PCGrad(LossWeighting):
    """Projecting conflicting gradients (Yu et al. 2020); the order in which each task projects
    onto the others is shuffled every step by a seeded generator, identical in every process."""

    needs_task_gradients = True

    def __init__(self, tasks: list[str], seed: int = 0, loss_weights=None) -> None:
        super().__init__(tasks, loss_weights)
        self.rng = random.Random(seed)

    def combine(self, gram: Tensor) -> Tensor:
        orders = []
        for i in range(len(self.tasks)):
            others = [j for j in range(len(self.tasks)) if j != i]
            self.rng.shuffle(others)
            orders.append(others)
        return self.remember(pcgrad_coefficients(gram, orders))

    def get_extra_state(self) -> dict:
        return {"rng": self.rng.getstate()}

    def set_extra_state(self, state: dict) -> None:
        rng = state["rng"]
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]))


class CAGrad(LossWeighting):
    """Conflict-averse gradient descent (Liu et al. 2021) with radius `c` (the paper's alpha)."""

    needs_task_gradients = True

    def __init__(self, tasks: list[str], c: float = 0.5, loss_weights=None) -> None:
        super().__init__(tasks, loss_weights)
        self.c = c

    def combine(self, gram: Tensor) -> Tensor:
        return self.remember(cagrad_coefficients(gram, self.c))
