"""The multi-task training loader: one task per batch, the task drawn by a seeded sampler (or,
in `all_tasks` step mode, one batch of every task per step)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from datasets import IterableDataset
from torch.utils.data import DataLoader

from mtl_nlp.common.choices import STEP_MODES
from mtl_nlp.data.batching import WINDOW_BATCHES, LengthGroupedBatchSampler
from mtl_nlp.data.features import FEATURE_COLUMNS
from mtl_nlp.data.pipeline import TaskData, build_collator
from mtl_nlp.data.sampling import TaskSampler, sampling_sizes, task_probabilities
from mtl_nlp.data.streaming import StreamingBatches
from mtl_nlp.data.teacher_columns import TEACHER_COLUMN, TeacherCollator


def training_collator(data: TaskData, tokenizer: Any):
    """The task's collator, padding its teacher outputs too when its rows carry them."""
    collate = build_collator(data.spec.type, tokenizer)
    if TEACHER_COLUMN not in data.splits["train"].column_names:
        return collate
    teacher = data.splits["train"].features[TEACHER_COLUMN]
    # an entry's column holds {head: outputs} for the heads that have a teacher
    heads = list(teacher) if data.heads else [data.spec.name]
    types = {head: data.head_data[head].spec.type for head in heads}
    return TeacherCollator(collate, types, entry=bool(data.heads),
                           padding_side=getattr(tokenizer, "padding_side", "right"))


class MultiTaskLoader:
    """Endless iterator of (task name, padded batch).

    Each task has its own length-grouped DataLoader over its training split; when one runs out
    it starts its next epoch (a fresh, seeded shuffle). In `one_task` mode the sampler picks the
    task of every batch; in `all_tasks` mode the batches come in rounds of one batch per task, in
    task order (`batches_per_step` per optimizer step and accumulation round).

    An epoch is as many batches as all tasks have together (one pass over all training data in
    total), whatever the sampling strategy, cap or step mode: they decide the mix, not the
    length. Checkpointable with state_dict, so a resumed run continues with the same task
    sequence and the same batches.
    """

    def __init__(
        self, tasks: dict[str, TaskData], tokenizer: Any, batch_size: int,
        max_tokens: int | None = None, strategy: str = "proportional", temperature: float = 2.0,
        seed: int = 0, num_replicas: int = 1, rank: int = 0, anneal: str = "up",
        cap: int | None = None, step_mode: str = "one_task", sort_window: int = WINDOW_BATCHES,
    ) -> None:
        if step_mode not in STEP_MODES:
            raise ValueError(f"step mode {step_mode!r} is not one of: {', '.join(STEP_MODES)}")
        self.step_mode = step_mode
        self.batch_samplers: dict[str, LengthGroupedBatchSampler | StreamingBatches] = {}
        self.loaders: dict[str, DataLoader | StreamingBatches] = {}
        for name, data in tasks.items():
            train = data.splits["train"]
            if isinstance(train, IterableDataset):  # a streamed task batches itself
                stream = StreamingBatches(
                    train, data.train_size, batch_size, build_collator(data.spec.type, tokenizer),
                    list(FEATURE_COLUMNS), seed=seed, num_replicas=num_replicas, rank=rank, task=name,
                    window_batches=sort_window,
                )
                self.batch_samplers[name] = self.loaders[name] = stream
                continue
            sampler = LengthGroupedBatchSampler(
                list(train["length"]), batch_size, max_tokens, seed=seed, num_replicas=num_replicas,
                rank=rank, window_batches=sort_window,
            )
            kept = (*FEATURE_COLUMNS, TEACHER_COLUMN)
            columns = [column for column in kept if column in train.column_names]
            self.batch_samplers[name] = sampler
            # A generator of its own: starting an iterator (every task epoch, and again after a
            # resume) then draws nothing from the global torch RNG, whose stream drives dropout and
            # is restored on resume, so a resumed run continues exactly as an uninterrupted one.
            self.loaders[name] = DataLoader(
                train.select_columns(columns), batch_sampler=sampler,
                collate_fn=training_collator(data, tokenizer),
                generator=torch.Generator().manual_seed(seed),
            )
        self.sizes = {name: len(sampler) for name, sampler in self.batch_samplers.items()}
        examples = {name: data.train_size for name, data in tasks.items()}
        self.sampling_sizes = sampling_sizes(self.sizes, examples, cap)
        self.task_sampler = TaskSampler(
            self.sampling_sizes, strategy, temperature, seed=seed, anneal=anneal
        )
        self.epochs = dict.fromkeys(tasks, 0)
        self.positions = dict.fromkeys(tasks, 0)
        self.drawn = dict.fromkeys(tasks, 0)  # batches taken per task so far (the realised mix)
        self._iterators: dict[str, Iterator] = {}

    @property
    def probabilities(self) -> dict[str, float]:
        """The sampling distribution of the next draw."""
        return self.task_sampler.probabilities()

    @property
    def batches_per_epoch(self) -> int:
        """Batches this process sees in one epoch: every task's training batches added up."""
        return sum(self.sizes.values())

    @property
    def batches_per_task_epoch(self) -> int:
        """Batches after which every task expects to have drawn its whole training set (its
        sampling size, see `cap`) at least once: max_i size_i / p_i, with p_i the task's mean
        sampling probability over the run. Proportional sampling makes it batches_per_epoch;
        temperature sampling, which draws a large task less often than its size, makes it longer."""
        if self.step_mode == "all_tasks" or self.task_sampler.strategy == "round_robin":
            return math.ceil(max(self.sampling_sizes.values())) * len(self.sizes)
        sampler = self.task_sampler
        points = 11 if sampler.strategy == "annealed" else 1  # the annealed schedule's mean, sampled
        mean = dict.fromkeys(self.sizes, 0.0)
        for point in range(points):
            probabilities = task_probabilities(self.sampling_sizes, sampler.strategy, sampler.temperature,
                                               point / max(points - 1, 1), sampler.anneal)
            for task, probability in probabilities.items():
                mean[task] += probability / points
        return math.ceil(max(self.sampling_sizes[task] / mean[task] for task in self.sizes) - 1e-9)

    @property
    def batches_per_step(self) -> int:
        """Batches per optimizer step and accumulation round: 1, or one per task in all_tasks."""
        return len(self.sizes) if self.step_mode == "all_tasks" else 1

    def set_run_length(self, batches: int) -> None:
        """Tell the sampler how many batches the run draws, so `annealed` knows its progress."""
        self.task_sampler.total_draws = max(1, batches)

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            if self.step_mode == "all_tasks":
                tasks = list(self.sizes)
            else:
                tasks = [next(self.task_sampler)]
            for task in tasks:
                self.drawn[task] += 1
                yield task, self.next_batch(task)

    def next_batch(self, task: str) -> dict[str, Any]:
        """The next training batch of `task`, outside the sampled sequence too (the affinity
        probe takes one of every task): it moves the task's position, which a resumed run
        restores, but is counted in `drawn` only when the sequence yields it."""
        iterator = self._iterators.get(task)
        if iterator is None:
            iterator = self._start(task)
        try:
            batch = next(iterator)
        except StopIteration:
            self.epochs[task] += 1
            self.positions[task] = 0
            batch = next(self._start(task))
        self.positions[task] += 1
        return batch

    def _start(self, task: str) -> Iterator:
        self.batch_samplers[task].set_epoch(self.epochs[task], start=self.positions[task])
        self._iterators[task] = iter(self.loaders[task])
        return self._iterators[task]

    def state_dict(self) -> dict[str, Any]:
        return {
            "sampler": self.task_sampler.state_dict(),
            "epochs": dict(self.epochs),
            "positions": dict(self.positions),
            "drawn": dict(self.drawn),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task_sampler.load_state_dict(state["sampler"])
        self.epochs.update(state["epochs"])
        self.positions.update(state["positions"])
        self.drawn.update(state.get("drawn", {}))
        self._iterators.clear()
