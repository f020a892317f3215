"""One optimizer step: the step's batches forward and backward, loss weighting or gradient
surgery, gradient synchronisation across processes, clipping and the optimizer update."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device

from mtl_nlp.data.teacher_columns import TEACHER_COLUMN
from mtl_nlp.training.teacher_annealing import TeacherAnnealing
from mtl_nlp.training.unused_parameters import parameters_unused_by, zero_touching
from mtl_nlp.training.weighting import LossWeighting, TaskGradients, cosine_matrix


@dataclass
class StepResult:
    """What one optimizer step did: each batch's task and loss, tokens seen, and the task x task
    gradient cosines when they were measured this step."""

    losses: list[tuple[str, torch.Tensor]] = field(default_factory=list)
    real_tokens: int = 0
    padded_tokens: int = 0
    cosines: list[list[float | None]] | None = None


class StepRunner:
    """Runs optimizer steps of `grad_accum` rounds of `batches_per_step` batches each.

    Gradient accumulation is done here rather than by Accelerate, because in `all_tasks` mode a
    step's batches belong to different tasks and gradient methods need each task's gradient on
    the shared parameters apart: every backward but the step's last skips DDP's all-reduce
    (`no_sync`), and gradient methods skip it for all of them and average the per-task gradient
    matrix across processes themselves, so every process combines the same gradients.
    """

    def __init__(
        self, accelerator: Accelerator, model: torch.nn.Module, optimizer: Any, scheduler: Any,
        weighting: LossWeighting, grad_accum: int, batches_per_step: int, max_grad_norm: float,
        conflict_every: int = 0, grad_norm_mode: str = "clip", annealing: TeacherAnnealing | None = None,
    ) -> None:
        self.accelerator, self.model = accelerator, model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.weighting = weighting
        self.grad_accum, self.batches_per_step = grad_accum, batches_per_step
        self.max_grad_norm, self.grad_norm_mode = max_grad_norm, grad_norm_mode
        self.conflict_every = conflict_every
        self.annealing = annealing  # the gold weight of batches with teacher outputs (None: no teachers)
        unwrapped = accelerator.unwrap_model(model)
        shared = list(unwrapped.shared_parameters())
        self.shared_ids = {id(p) for p in shared}
        self.all_tasks = batches_per_step > 1
        needs_rows = weighting.needs_task_gradients or conflict_every > 0
        self.task_gradients = TaskGradients(shared, weighting.tasks) if needs_rows else None
        self.own_parameters = [  # averaged by hand when DDP's all-reduce is skipped
            p for p in unwrapped.parameters() if p.requires_grad and id(p) not in self.shared_ids
        ]
        # DDP runs without searching for unused parameters: see unused_parameters.py. FSDP
        # reduces only the gradients a step produced, on every process alike, and needs no zero.
        # (a DDP wrapper, also of a single process under torchrun, not the process count)
        self.ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
        self.unused = parameters_unused_by(unwrapped, unwrapped.batch_tasks) if self.ddp else {}
        self.unused_ids = {task: {id(p) for p in parameters} for task, parameters in self.unused.items()}

    def _measures_conflicts(self, step: int) -> bool:
        return self.conflict_every > 0 and step % self.conflict_every == 0

    def run(self, batches: Iterator[tuple[str, dict]], step: int) -> StepResult:
        """Optimizer step number `step` (counted from 1) over the next batches of `batches`."""
        result = StepResult()
        separate = self.all_tasks and (
            self.weighting.needs_task_gradients or self._measures_conflicts(step)
        )
        count = self.grad_accum * self.batches_per_step
        for index in range(count):
            task, batch = next(batches)
            sync = index == count - 1 and not separate
            context = contextlib.nullcontext() if sync else self._no_sync()
            with context:
                loss = self._forward_backward(task, batch, result, sync, step)
            result.losses.append((task, loss))
            if separate:
                self.task_gradients.take(task)
            elif self.task_gradients is not None and not self.all_tasks:
                self.task_gradients.record(task)
        if separate:
            result.cosines = self._combine_task_gradients(step)
        else:
            self._forget_zero_gradients({task for task, _ in result.losses})
            if self.task_gradients is not None and self._measures_conflicts(step):
                result.cosines = cosine_matrix(self.task_gradients.gram())
        self._average_by_hand(self.weighting.parameters())
        if self.max_grad_norm > 0:
            self._bound_gradient()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        if self.task_gradients is not None:
            self.task_gradients.end_step()
        self.weighting.end_step(step, self._sum_over_processes)
        return result

    def _bound_gradient(self) -> None:
        """Clip the step's gradient to max_grad_norm; or (normalize) scale the shared encoder's
        gradient to that norm and clip the rest (heads, private layers) to it."""
        if self.grad_norm_mode == "clip":
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            return
        shared, own = [], []
        for parameter in self.model.parameters():
            if parameter.grad is not None:
                (shared if id(parameter) in self.shared_ids else own).append(parameter)
        # the norm over every process's shards; an infinite bound changes nothing
        norm = self.accelerator.clip_grad_norm_(shared, float("inf")) if shared else None
        if norm is not None and torch.isfinite(norm) and norm > 0:
            torch._foreach_mul_([p.grad for p in shared], float(self.max_grad_norm / norm))
        if own:
            self.accelerator.clip_grad_norm_(own, self.max_grad_norm)

    def _no_sync(self) -> contextlib.AbstractContextManager:
        """Skip the all-reduce of this backward. A DDP wrapper is asked itself: Accelerate's
        no_sync does nothing for one process, yet torchrun with one process wraps the model in
        DDP, whose next forward would then find the unused parameters of a synced backward."""
        return self.model.no_sync() if self.ddp else self.accelerator.no_sync(self.model)

    def _forward_backward(
        self, task: str, batch: dict, result: StepResult, sync: bool, step: int
    ) -> torch.Tensor:
        mask = batch["attention_mask"]  # counted on the host, before the batch moves to the device
        result.real_tokens += int(mask.sum())
        result.padded_tokens += mask.numel()
        batch = send_to_device(batch, self.accelerator.device)
        if TEACHER_COLUMN in batch:
            if self.annealing is None:
                raise ValueError(f"task {task}'s batches carry teacher outputs, but the run has no "
                                 "teacher annealing schedule")
            batch.update(self.annealing.loss_arguments(step))
        loss = self.model(task=task, **batch)["loss"]  # the prepared model autocasts its forward
        self.weighting.observe(task, loss.detach())
        objective = self.weighting.weigh(task, loss) / self.grad_accum
        if sync and self.unused:  # every parameter takes part in the all-reduce
            objective = objective + zero_touching(self.unused[task])
        self.accelerator.backward(objective)
        return loss

    def _forget_zero_gradients(self, tasks: set[str]) -> None:
        """Under DDP, parameters that no batch of the step used got an exact zero gradient from
        the zero term; give them none again, so the optimizer skips them as it does in one
        process or under FSDP (no weight decay, no decay of Adam's moments for an idle head)."""
        if not self.unused:
            return
        idle = set.intersection(*(self.unused_ids[task] for task in tasks))
        for parameter in self.unused[next(iter(tasks))]:  # every idle parameter is in each list
            if id(parameter) in idle:
                parameter.grad = None

    def _combine_task_gradients(self, step: int) -> list[list[float | None]] | None:
        """Average the task rows and the task-specific gradients over the processes, then write
        the method's combination of the rows as the shared gradients."""
        rows = self.task_gradients
        if self.accelerator.num_processes > 1:
            rows.matrix = self.accelerator.reduce(rows.matrix, reduction="mean")
        self._average_by_hand(self.own_parameters)
        gram = rows.gram()
        rows.write(self.weighting.combine(gram))
        return cosine_matrix(gram) if self._measures_conflicts(step) else None

    def _average_by_hand(self, parameters) -> None:
        """Average `.grad`s over the processes (for gradients DDP did not synchronise)."""
        if self.accelerator.num_processes == 1:
            return
        with_grad = [p for p in parameters if p.grad is not None]
        if not with_grad:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in with_grad])
        flat = self.accelerator.reduce(flat, reduction="mean")
        for parameter, chunk in zip(with_grad, torch.split(flat, [p.numel() for p in with_grad])):
            parameter.grad.copy_(chunk.view_as(parameter))

    def _sum_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes == 1:
            return tensor
        return self.accelerator.reduce(tensor.to(self.accelerator.device), reduction="sum").cpu()
