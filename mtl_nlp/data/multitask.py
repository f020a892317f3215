"""The multi-task training loader: one task per batch, the task drawn by a seeded sampler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from mtl_nlp.data.batching import LengthGroupedBatchSampler
from mtl_nlp.data.features import FEATURE_COLUMNS
from mtl_nlp.data.pipeline import TaskData, build_collator
from mtl_nlp.data.sampling import TaskSampler, task_probabilities


class MultiTaskLoader:
    """Endless iterator of (task name, padded batch).

    Each task has its own length-grouped DataLoader over its training split; when one runs out
    it starts its next epoch (a fresh, seeded shuffle). Checkpointable with state_dict, so a
    resumed run continues with the same task sequence and the same batches.
    """

    def __init__(
        self, tasks: dict[str, TaskData], tokenizer: Any, batch_size: int,
        max_tokens: int | None = None, strategy: str = "proportional", temperature: float = 2.0,
        seed: int = 0, num_replicas: int = 1, rank: int = 0,
    ) -> None:
        self.batch_samplers: dict[str, LengthGroupedBatchSampler] = {}
        self.loaders: dict[str, DataLoader] = {}
        for name, data in tasks.items():
            train = data.splits["train"]
            sampler = LengthGroupedBatchSampler(
                list(train["length"]), batch_size, max_tokens, seed=seed, num_replicas=num_replicas,
                rank=rank,
            )
            columns = [column for column in FEATURE_COLUMNS if column in train.column_names]
            self.batch_samplers[name] = sampler
            self.loaders[name] = DataLoader(
                train.select_columns(columns), batch_sampler=sampler,
                collate_fn=build_collator(data.spec.type, tokenizer),
            )
        self.sizes = {name: len(sampler) for name, sampler in self.batch_samplers.items()}
        self.probabilities = task_probabilities(self.sizes, strategy, temperature)
        self.task_sampler = TaskSampler(self.probabilities, seed=seed)
        self.epochs = dict.fromkeys(tasks, 0)
        self.positions = dict.fromkeys(tasks, 0)
        self._iterators: dict[str, Iterator] = {}

    @property
    def batches_per_epoch(self) -> int:
        """Batches this process sees in one pass over every task's training data."""
        return sum(self.sizes.values())

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            task = next(self.task_sampler)
            yield task, self._next_batch(task)

    def _next_batch(self, task: str) -> dict[str, Any]:
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
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task_sampler.load_state_dict(state["sampler"])
        self.epochs.update(state["epochs"])
        self.positions.update(state["positions"])
        self._iterators.clear()
