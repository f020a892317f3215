"""Per-task gradients of the shared parameters, kept as rows of one T x P matrix."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TaskGradients:
    """Collects each task's gradient of the shared parameters after its backward pass.

    `take(task)` moves the shared `.grad`s into the task's row (adding, so gradient accumulation
    over several batches works) and clears them, so the next task's backward starts from zero;
    heads and private layers keep their `.grad`s untouched. `write(coefficients)` puts
    sum_t coefficient_t * row_t back as the shared gradients. `record(task)` instead leaves the
    gradients in place and keeps the batch's own contribution (for diagnostics in one_task mode).
    """

    def __init__(self, parameters: list[nn.Parameter], tasks: list[str]) -> None:
        self.parameters = [p for p in parameters if p.requires_grad]
        self.tasks = list(tasks)
        self.index = {task: i for i, task in enumerate(self.tasks)}
        self.sizes = [p.numel() for p in self.parameters]
        self.matrix: Tensor | None = None
        self.filled: set[int] = set()  # rows holding a gradient this step (take mode)
        self.running: Tensor | None = None  # shared gradient so far this step (record mode)

    def _flat(self, out: Tensor | None = None) -> Tensor:
        parts = [
            p.grad.reshape(-1).float() if p.grad is not None
            else torch.zeros(p.numel(), device=p.device)
            for p in self.parameters
        ]
        return torch.cat(parts, out=out) if out is not None else torch.cat(parts)

    def _rows(self) -> Tensor:
        if self.matrix is None:
            device = self.parameters[0].device
            self.matrix = torch.zeros(len(self.tasks), sum(self.sizes), device=device)
        return self.matrix

    def take(self, task: str) -> None:
        """Add the current shared gradients to `task`'s row and clear them."""
        row = self._rows()[self.index[task]]
        if self.index[task] in self.filled:  # accumulating: a second batch of the task this step
            row += self._flat()
        else:  # the first: written straight into the row, no extra pass over P values
            self._flat(out=row)
            self.filled.add(self.index[task])
        for parameter in self.parameters:
            parameter.grad = None

    def record(self, task: str) -> None:
        """Keep the gradient the last batch of `task` added, leaving `.grad` as it is."""
        flat = self._flat()
        previous = self.running if self.running is not None else torch.zeros_like(flat)
        self._rows()[self.index[task]] = flat - previous
        self.running = flat

    def gram(self) -> Tensor:
        """The T x T matrix of dot products between the task rows (float64, on the CPU)."""
        rows = self._rows()
        if self.filled:  # take mode: a task with no batch this step has no gradient
            for index in set(range(len(self.tasks))) - self.filled:
                rows[index].zero_()
        return (rows @ rows.T).double().cpu()

    def write(self, coefficients: Tensor) -> None:
        """Set the shared gradients to sum_t coefficient_t * row_t; the rows start over."""
        rows = self._rows()
        combined = coefficients.to(rows.device, rows.dtype) @ rows
        for parameter, chunk in zip(self.parameters, torch.split(combined, self.sizes)):
            parameter.grad = chunk.view_as(parameter).to(parameter.dtype)
        self.filled.clear()  # the next step's first batches overwrite the rows

    def end_step(self) -> None:
        """Forget this step's running gradient (record mode); rows keep each task's last batch."""
        self.running = None


def cosine_matrix(gram: Tensor) -> list[list[float | None]]:
    """Cosine similarities from a Gram matrix; None where a task's gradient is zero (not seen)."""
    norms = gram.diagonal().clamp(min=0).sqrt()
    count = gram.shape[0]
    return [
        [float(gram[i, j] / (norms[i] * norms[j])) if norms[i] > 0 and norms[j] > 0 else None
         for j in range(count)]
        for i in range(count)
    ]
