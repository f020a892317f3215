"""Dynamic batching for the server: the inputs of concurrent requests wait in a bounded queue and
are merged into one Predictor call. A batch takes every request that queued while the last one
ran, up to `max_batch_tokens` tokens, and waits at most `max_wait_ms` for more (0: none, so a lone
request pays no wait and batches still grow with the load). The model runs in a worker thread,
off the event loop, and so does everything else that touches the tokenizer: each request's
check before the model and the shaping of its answers after (a fast tokenizer keeps its
truncation settings in shared state, so two threads tokenizing at once corrupt each other)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

Predict = Callable[[list[Any], list[str] | None], list[dict[str, Any]]]
Check = Callable[[list[Any], list[str] | None], None]  # raises to refuse one request, on the model thread
Shape = Callable[[list[dict[str, Any]]], Any]  # one request's answers as its endpoint returns them


class Overloaded(Exception):
    """The queue is full: the request is answered 503 at once instead of waiting."""


@dataclass
class Job:
    """One request's inputs, the tasks it asks for, its estimated cost, how its answers are
    shaped (on the model thread) and the future they go to."""

    inputs: list[Any]
    tasks: tuple[str, ...] | None
    tokens: int
    future: asyncio.Future = field(repr=False)
    shape: Shape | None = field(default=None, repr=False)


class DynamicBatcher:
    """Merges the jobs of concurrent requests into Predictor calls (one per set of requested
    tasks within a batch); `batches` counts the calls, for tests and metrics. `check`, when
    given, runs on the model thread before a job joins a call: what it raises is that job's
    answer alone."""

    def __init__(self, predict: Predict, count_tokens: Callable[[list[Any], list[str] | None], int],
                 max_batch_tokens: int, max_wait_ms: float, max_queue: int,
                 check: Check | None = None) -> None:
        self.predict, self.count_tokens, self.check = predict, count_tokens, check
        self.max_batch_tokens, self.max_wait = max_batch_tokens, max_wait_ms / 1000
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queue)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtl-nlp-model")
        self.batches = 0
        self._worker: asyncio.Task | None = None
        self._held: Job | None = None  # dequeued, but too large to join the last batch
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, inputs: list[Any], tasks: list[str] | None, shape: Shape | None = None) -> Any:
        """The answers to `inputs` (passed through `shape` on the model thread), once the batch
        holding them has run; Overloaded when the queue is full. Cancelling the wait (a timeout,
        a client gone) drops the job if it has not reached the model yet."""
        tokens = self.count_tokens(inputs, tasks)
        job = Job(inputs, tuple(tasks) if tasks is not None else None, tokens,
                  asyncio.get_running_loop().create_future(), shape)
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(f"the server's queue is full ({self.queue.maxsize} requests)") from None
        self._idle.clear()
        return await job.future

    def on_model_thread(self, function: Callable[[], Any]) -> asyncio.Future:
        """Run `function` on the model's thread (after the call in progress)."""
        return asyncio.get_running_loop().run_in_executor(self.executor, function)

    async def drain(self) -> None:
        """Answer every job already queued, then stop the worker."""
        while not (self.queue.empty() and self._held is None and self._idle.is_set()):
            await asyncio.sleep(0.01)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self.executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._run_batch([job for job in batch if not job.future.done()])  # done: given up
            if self.queue.empty() and self._held is None:
                self._idle.set()

    async def _next_batch(self) -> list[Job]:
        """The jobs of the next model call: the job held back from the last one (or the next in
        the queue), then what queued while the model ran, until `max_batch_tokens`. A job that
        would take the batch over the bound waits for the next call, so a small request never
        shares a model call with a large one that came after it."""
        loop = asyncio.get_running_loop()
        first, self._held = self._held or await self.queue.get(), None
        batch, tokens, deadline = [first], first.tokens, loop.time() + self.max_wait
        while tokens < self.max_batch_tokens:
            if self.queue.empty():  # what queued while the last batch ran is taken at once
                wait = deadline - loop.time()
                if wait <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), wait)
                except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                    break
            else:
                job = self.queue.get_nowait()
            if tokens + job.tokens > self.max_batch_tokens:
                self._held = job
                break
            batch.append(job)
            tokens += job.tokens
        return batch

    async def _run_batch(self, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        groups: dict[tuple[str, ...] | None, list[Job]] = {}
        for job in batch:
            groups.setdefault(job.tasks, []).append(job)
        for tasks, jobs in groups.items():
            try:
                outcomes = await loop.run_in_executor(self.executor, self._call, jobs, tasks)
            except Exception as error:  # a bug: every request of the call learns of it
                outcomes = [(False, error)] * len(jobs)
            for job, (ok, value) in zip(jobs, outcomes):
                if job.future.done():  # given up while the model ran
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    def _call(self, jobs: list[Job], tasks: tuple[str, ...] | None) -> list[tuple[bool, Any]]:
        """On the model thread: check each job, one Predictor call over the inputs of those
        accepted, each job's answers shaped; (ok, answers or error) for each job."""
        names = list(tasks) if tasks is not None else None
        outcomes: list[tuple[bool, Any] | None] = [None] * len(jobs)
        accepted = []
        for index, job in enumerate(jobs):
            try:
                if self.check is not None:
                    self.check(job.inputs, names)
                accepted.append(index)
            except Exception as error:  # this request's own refusal (or bug)
                outcomes[index] = (False, error)
        inputs = [item for index in accepted for item in jobs[index].inputs]
        if inputs:
            self.batches += 1
            answers = self.predict(inputs, names)
            start = 0
            for index in accepted:
                job = jobs[index]
                part = answers[start:start + len(job.inputs)]
                start += len(job.inputs)
                try:
                    outcomes[index] = (True, job.shape(part) if job.shape is not None else part)
                except Exception as error:
                    outcomes[index] = (False, error)
        return outcomes
