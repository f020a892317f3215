"""Batch samplers that group examples of similar length, so dynamic padding wastes little.

Training batches keep the randomness SGD needs: examples are shuffled, grouped into windows of
many batches, sorted by length only inside a window, cut into batches, and the batch order is
shuffled again. Every process computes the same batches from the same seed and takes its own
share, so a distributed run needs no communication to shard the data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

# batches per length-sorting window (train.sort_window's default): larger pads less, smaller mixes more
WINDOW_BATCHES = 64


def cut_batches(
    ordered: Sequence[int], lengths: Sequence[int], batch_size: int, max_tokens: int | None
) -> list[list[int]]:
    """Cut indices (already in the desired order) into batches.

    With `max_tokens`, a batch grows while (rows x longest length) stays within the budget, capped
    at `batch_size` rows when max_tokens is None; a single over-long example is a batch of its own.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in ordered:
        length = lengths[index]
        grown = max(longest, length)
        full = (
            (len(current) + 1) * grown > max_tokens if max_tokens is not None
            else len(current) >= batch_size
        )
        if current and full:
            batches.append(current)
            current, grown = [], length
        current.append(index)
        longest = grown
    if current:
        batches.append(current)
    return batches


class LengthGroupedBatchSampler:
    """Shuffled, length-grouped training batches; `set_epoch` reshuffles deterministically."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, max_tokens: int | None = None,
        seed: int = 0, num_replicas: int = 1, rank: int = 0, window_batches: int = WINDOW_BATCHES,
    ) -> None:
        if not lengths:
            raise ValueError("cannot batch an empty dataset")
        self.window_batches = window_batches
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start = 0  # batches of this epoch to skip (resuming mid-epoch)
        self._cached: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the shuffle of `epoch` and skip its first `start` batches."""
        self.epoch, self.start = epoch, start

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of `epoch`, identical for every call with the same seed."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = random.Random(f"{self.seed}-{epoch}")
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        window_rows = self.window_batches * self._rows_per_batch_estimate()
        batches: list[list[int]] = []
        for begin in range(0, len(order), window_rows):
            window = sorted(order[begin : begin + window_rows], key=self.lengths.__getitem__)
            batches.extend(cut_batches(window, self.lengths, self.batch_size, self.max_tokens))
        rng.shuffle(batches)
        # Every process needs the same number of batches (at least one): repeat batches in turn
        # to fill the last round, as often as needed when a small task has fewer than processes.
        shortfall = -len(batches) % self.num_replicas
        batches.extend(batches[index % len(batches)] for index in range(shortfall))
        mine = batches[self.rank :: self.num_replicas]
        self._cached = (epoch, mine)
        return mine

    def _rows_per_batch_estimate(self) -> int:
        if self.max_tokens is None:
            return self.batch_size
        mean_length = sum(self.lengths) / len(self.lengths)
        return max(1, int(self.max_tokens / mean_length))

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches(self.epoch)[self.start :]

    def __len__(self) -> int:
        return len(self.epoch_batches(self.epoch)) - self.start


class SortedBatchSampler:
    """Evaluation batches: examples sorted by length (longest first), `batch_size` rows each.

    Every batch but the last is full, like torch's BatchSampler, so Accelerate can shard it and
    `gather_for_metrics` can drop the examples it repeats to even out the processes.
    """

    drop_last = False

    def __init__(self, lengths: Sequence[int], batch_size: int) -> None:
        self.batch_size = batch_size
        order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
        self.batches = [order[b : b + batch_size] for b in range(0, len(order), batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches

    def __len__(self) -> int:
        return len(self.batches)
