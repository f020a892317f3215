"""Training batches of a task too large for memory: its training file read as a stream.

A task with `streaming: true` keeps its training split as a `datasets.IterableDataset`, tokenized
on the fly. Each epoch is one pass over the stream through a seeded shuffle buffer; every process
reads the stream and keeps its share (every num_replicas-th example); examples are gathered into
windows of many batches, sorted by length inside a window and cut into batches whose order is
shuffled again, as for in-memory tasks. Memory holds the shuffle buffer and one window, whatever
the size of the file.

Every process yields exactly `batches_per_epoch` batches per epoch (computed from the task's
declared or counted size), repeating the epoch's first batches when its share runs short, so all
ranks agree on epochs and positions and a resumed run skips to the same place.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

from datasets import IterableDataset

from mtl_nlp.data.batching import WINDOW_BATCHES, cut_batches

logger = logging.getLogger(__name__)

SHUFFLE_BUFFER = 10_000  # examples held by the stream's shuffle buffer
REPEATED_BATCHES = 8  # first batches of an epoch kept to fill a share that runs short


class StreamingBatches:
    """Length-grouped, collated training batches of one streamed task, one epoch per pass;
    `set_epoch(epoch, start)` selects the epoch's shuffle and skips its first `start` batches."""

    def __init__(
        self, dataset: IterableDataset, examples: int, batch_size: int,
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]], columns: list[str],
        seed: int = 0, num_replicas: int = 1, rank: int = 0, task: str = "stream",
        window_batches: int = WINDOW_BATCHES,
    ) -> None:
        if examples < 1:
            raise ValueError(f"task {task!r}: a streamed task needs at least one training example")
        self.dataset, self.examples, self.batch_size = dataset, examples, batch_size
        self.collate, self.columns = collate, columns
        self.seed, self.num_replicas, self.rank, self.task = seed, num_replicas, rank, task
        self.window_batches = window_batches
        self.batches_per_epoch = max(1, math.ceil(examples / (batch_size * num_replicas)))
        self.epoch, self.start = 0, 0
        self.warned_longer = False

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index, rows in enumerate(self._epoch_rows()):
            if index >= self.start:
                yield self.collate(rows)

    def _epoch_rows(self) -> Iterator[list[dict[str, Any]]]:
        """Exactly batches_per_epoch batches of rows for this process."""
        kept: list[list[dict[str, Any]]] = []  # the epoch's first batches, repeated if it runs short
        made = 0
        for rows in self._stream_batches():
            if made == self.batches_per_epoch:
                self._warn_longer_than_declared()
                return
            if len(kept) < REPEATED_BATCHES:
                kept.append(rows)
            made += 1
            yield rows
        if made == 0:
            raise ValueError(f"task {self.task!r}: the training stream yielded no example")
        if made + 1 < self.batches_per_epoch:
            logger.warning(
                "task %s: the stream gave %d batches where its size (%d examples) promised %d; "
                "repeating batches to complete the epoch", self.task, made, self.examples,
                self.batches_per_epoch,
            )
        for extra in range(self.batches_per_epoch - made):
            yield kept[extra % len(kept)]

    def _warn_longer_than_declared(self) -> None:
        """Say once that the file holds more than the task's size: epochs (and so the schedule,
        the sampler and every process's batch count) follow the size, so the rest of each
        shuffled pass is never trained on."""
        if self.warned_longer:
            return
        self.warned_longer = True
        logger.warning(
            "task %s: its training file holds more examples than its size (%d) declares; each epoch "
            "trains on %d batches of the shuffled stream and never reaches the rest of the file: set "
            "size to the file's number of examples, or remove it to have them counted",
            self.task, self.examples, self.batches_per_epoch,
        )

    def _stream_batches(self) -> Iterator[list[dict[str, Any]]]:
        stream = self.dataset.shuffle(seed=self.seed, buffer_size=SHUFFLE_BUFFER)
        stream.set_epoch(self.epoch)
        rng = random.Random(f"{self.seed}-{self.epoch}-stream")
        window_size = self.window_batches * self.batch_size
        window: list[dict[str, Any]] = []
        for index, example in enumerate(stream):
            if index % self.num_replicas != self.rank:
                continue
            window.append({column: example[column] for column in self.columns if column in example})
            if len(window) == window_size:
                yield from self._window_batches(window, rng)
                window = []
        if window:
            yield from self._window_batches(window, rng)

    def _window_batches(self, window: list[dict[str, Any]], rng: random.Random) -> list[list[dict]]:
        lengths = [len(row["input_ids"]) for row in window]
        order = sorted(range(len(window)), key=lengths.__getitem__)
        batches = cut_batches(order, lengths, self.batch_size, None)
        rng.shuffle(batches)
        return [[window[index] for index in batch] for batch in batches]
