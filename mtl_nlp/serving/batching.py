"""Dynamic batching for the server: the inputs of concurrent requests wait in a bounded queue and
are merged into one Predictor call. A batch takes every request that queued while the last one
ran, up to `max_batch_tokens` tokens, and waits at most `max_wait_ms` for more (0: none, so a lone
request pays no wait and batches still grow with the load). The model runs in a worker thread,
off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

Predict = Callable[[list[Any], list[str] | None], list[dict[str, Any]]]


class Overloaded(Exception):
    """The queue is full: the request is answered 503 at once instead of waiting."""


@dataclass
class Job:
    """One request's inputs, the tasks it asks for and the future its answers go to."""

    inputs: list[Any]
    tasks: tuple[str, ...] | None
    tokens: int
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    """Merges the jobs of concurrent requests into Predictor calls (one per set of requested
    tasks within a batch); `batches` counts the calls, for tests and metrics."""

    def __init__(self, predict: Predict, count_tokens: Callable[[list[Any]], int], max_batch_tokens: int,
                 max_wait_ms: float, max_queue: int) -> None:
        self.predict, self.count_tokens = predict, count_tokens
        self.max_batch_tokens, self.max_wait = max_batch_tokens, max_wait_ms / 1000
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queue)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtl-nlp-model")
        self.batches = 0
        self.batch_sizes: list[int] = []  # inputs per model call, for the metrics
        self._worker: asyncio.Task | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, inputs: list[Any], tasks: list[str] | None) -> list[dict[str, Any]]:
        """The answers to `inputs`, once the batch holding them has run; Overloaded when the
        queue is full."""
        tokens = self.count_tokens(inputs)
        job = Job(inputs, tuple(tasks) if tasks is not None else None, tokens,
                  asyncio.get_running_loop().create_future())
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(f"the server's queue is full ({self.queue.maxsize} requests)") from None
        self._idle.clear()
        return await job.future

    async def drain(self) -> None:
        """Answer every job already queued, then stop the worker."""
        while not (self.queue.empty() and self._idle.is_set()):
            await asyncio.sleep(0.01)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self.executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            tokens, deadline = batch[0].tokens, loop.time() + self.max_wait
            while tokens < self.max_batch_tokens:
                if self.queue.empty():  # what queued while the last batch ran is taken at once
                    wait = deadline - loop.time()
                    if wait <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self.queue.get(), wait)
                    except TimeoutError:
                        break
                else:
                    job = self.queue.get_nowait()
                batch.append(job)
                tokens += job.tokens
            await self._run_batch([job for job in batch if not job.future.done()])  # done: timed out
            if self.queue.empty():
                self._idle.set()

    async def _run_batch(self, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        groups: dict[tuple[str, ...] | None, list[Job]] = {}
        for job in batch:
            groups.setdefault(job.tasks, []).append(job)
        for tasks, jobs in groups.items():
            inputs = [item for job in jobs for item in job.inputs]
            self.batches += 1
            self.batch_sizes.append(len(inputs))
            try:
                answers = await loop.run_in_executor(
                    self.executor, self.predict, inputs, list(tasks) if tasks is not None else None)
            except Exception as error:  # a bug: every request of the call learns of it
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            start = 0
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(answers[start:start + len(job.inputs)])
                start += len(job.inputs)
