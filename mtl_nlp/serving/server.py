"""What one running server holds: the Predictor, its settings, the batching queue, readiness and
the Prometheus metrics. The routes (serving.routes) reach it through the request's app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mtl_nlp.inference import Predictor, PredictorInputError, UnknownTaskError
from mtl_nlp.inference.inputs import CHOICES, PAIR, QUESTION, TEXT, is_blank
from mtl_nlp.serving.batching import DynamicBatcher, Overloaded, Shape
from mtl_nlp.serving.requests import ApiError, Limits

CHARACTERS_PER_TOKEN = 4  # for sizing batches; English subword tokenizers average about this
MAX_WAIT_MS = 10_000.0  # a batching wait longer than this would be a typo (and a NaN no bound)
MAX_TIMEOUT_S = 3600.0
NOT_READY = "the model is still loading or the server is stopping"
# the warm-up request of each kind of input (as the JSON body carries it)
WARM_UP = {TEXT: "warm up", PAIR: ["warm up", "warm up"],
           CHOICES: {"question": "warm up", "choices": ["yes", "no"]},
           QUESTION: {"question": "warm up ?", "context": "warm up"}}


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches, bounds and guards its work (the `mtl-nlp serve` options)."""

    max_batch_tokens: int = 8192  # a batch closes once its inputs hold about this many tokens ...
    max_wait_ms: float = 0.0  # ... or once its first request has waited this long (what queued
    # while the last batch ran joins at once: under load batches form without waiting)
    max_queue: int = 512  # requests waiting for the model; more are answered 503 at once
    max_inputs: int = 256  # inputs per request
    max_request_bytes: int = 1 << 20
    max_request_windows: int = 512  # encoder windows per request: an input is one, a long text
    # that a tagging task reads is one per max_length - stride tokens (413 beyond)
    timeout_s: float = 30.0  # a request not answered by then gets 504
    api_key: str | None = None  # every endpoint but the page and the probes then needs it
    cors_origins: tuple[str, ...] = ()  # origins a browser page may call from (none: CORS off)

    def __post_init__(self) -> None:
        for name, low in (("max_batch_tokens", 1), ("max_queue", 1), ("max_inputs", 1),
                          ("max_request_bytes", 1), ("max_request_windows", 1)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {getattr(self, name)!r}")
        if not 0 <= self.max_wait_ms <= MAX_WAIT_MS:
            raise ValueError(f"max_wait_ms must be in [0, {MAX_WAIT_MS}], got {self.max_wait_ms!r}")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(f"timeout_s must be in (0, {MAX_TIMEOUT_S}], got {self.timeout_s!r}")


class ServerMetrics:
    """Prometheus metrics of one app: requests by endpoint and status, latency, batch sizes and
    the queue's depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mtl_nlp_requests_total", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("mtl_nlp_request_seconds", "Time to answer a request", ["endpoint"],
                                 registry=self.registry)
        self.batch_inputs = Histogram("mtl_nlp_batch_inputs", "Inputs per model call",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.queue_depth = Gauge("mtl_nlp_queue_depth", "Requests waiting for the model",
                                 registry=self.registry)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)


@dataclass
class Server:
    """The state of one app: built by create_app, started and stopped by its lifespan."""

    predictor: Predictor
    settings: ServeSettings
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    batcher: DynamicBatcher | None = None
    ready: bool = False

    @property
    def limits(self) -> Limits:
        return Limits(self.settings.max_request_bytes, self.settings.max_inputs)

    def count_tokens(self, inputs: list[Any], tasks: list[str] | None) -> int:
        """An estimate for sizing batches (4 characters a token; at most max_length an input,
        except a text that a tagging task reads in windows): tokenizing here would run the
        tokenizer on the event loop, beside the model thread's."""
        windowed = self._windowed(tasks)
        total = 0
        for item in inputs:
            tokens = 2 + len(item if isinstance(item, str) else " ".join(item)) // CHARACTERS_PER_TOKEN
            total += tokens if windowed and isinstance(item, str) else min(self.predictor.max_length, tokens)
        return total

    def _windowed(self, tasks: list[str] | None) -> bool:
        """Whether a long text sent for `tasks` is read as windows (a tagging task reads it)."""
        configs = self.predictor.model.head_configs
        return any(configs[task].type == "token_classification" for task in tasks or configs)

    def check_cost(self, inputs: list[Any], tasks: list[str] | None) -> None:
        """On the model thread, before the model: 413 for a request whose inputs cost more
        encoder windows than `max_request_windows`."""
        limit = self.settings.max_request_windows
        windows = self.predictor.count_windows(inputs, tasks, limit)
        if sum(windows) > limit:
            longest = max(range(len(windows)), key=windows.__getitem__)
            raise ApiError(413, "request_too_costly",
                           f"the request costs at least {sum(windows)} encoder windows (input {longest} "
                           f"{windows[longest]}: a tagging task reads a text longer than "
                           f"{self.predictor.max_length} tokens as overlapping windows); the limit is "
                           f"{limit} per request (--max-request-windows)")

    def run_batch(self, inputs: list[Any], tasks: list[str] | None) -> list[dict[str, Any]]:
        """One model call over merged requests (on the batcher's model thread); classification
        answers carry every label's score, for the per-task endpoint's top_k."""
        self.metrics.batch_inputs.observe(len(inputs))
        return self.predictor.predict([tuple(item) if isinstance(item, list) else item for item in inputs],
                                      tasks, all_scores=True)

    def queue_full(self) -> bool:
        return self.batcher is not None and self.batcher.queue.full()

    async def start(self) -> None:
        """Start the batching queue and warm the model up: one request of each input kind the
        model takes, so the first user does not pay for it."""
        settings = self.settings
        self.batcher = DynamicBatcher(self.run_batch, self.count_tokens, settings.max_batch_tokens,
                                      settings.max_wait_ms, settings.max_queue, check=self.check_cost)
        self.batcher.start()
        self.metrics.queue_depth.set_function(self.batcher.queue.qsize)
        kinds = {self.predictor.kind_of(task) for task in self.predictor.tasks}
        for kind in (kind for kind in WARM_UP if kind in kinds):  # a model of question tasks only too
            await self.batcher.submit([WARM_UP[kind]], None)
        self.ready = True

    async def stop(self) -> None:
        """Stop taking requests and answer what was accepted before the shutdown."""
        self.ready = False
        if self.batcher is not None:
            await self.batcher.drain()

    async def answer(self, inputs: list[Any], tasks: list[str] | None, shape: Shape | None = None,
                     gone: Callable[[], Awaitable[None]] | None = None) -> Any:
        """The Predictor's answers for one request's inputs through the batching queue, passed
        through `shape` on the model thread; ApiError for inputs it refuses, a server not ready, a
        full queue, a timeout, or a client gone (`gone` returns when it disconnects) first."""
        checked = self.check(inputs, tasks)
        if not self.ready or self.batcher is None:
            raise ApiError(503, "not_ready", NOT_READY)
        try:
            return await asyncio.wait_for(unless_gone(self.batcher.submit(checked, tasks, shape), gone),
                                          self.settings.timeout_s)
        except Overloaded as error:
            raise ApiError(503, "overloaded", f"{error}; retry later") from None
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            raise ApiError(504, "timeout", f"no answer within {self.settings.timeout_s:g} s") from None

    def check(self, inputs: list[Any], tasks: list[str] | None) -> list[Any]:
        """`inputs` checked as the Predictor checks them (422 naming the input or the task), and
        422 for a task named twice or an input with no text (empty or whitespace only)."""
        seen: set[str] = set()
        for task in tasks or ():  # a set: a list of 100,000 names is checked in one pass
            if task in seen:
                raise ApiError(422, "invalid_tasks", f"task {task!r} is asked for more than once")
            seen.add(task)
        try:
            checked = self.predictor.check_inputs(inputs, tasks)
        except UnknownTaskError as error:
            raise ApiError(422, "unknown_task", str(error)) from None
        except PredictorInputError as error:
            raise ApiError(422, "invalid_inputs", str(error)) from None
        blank = next((index for index, item in enumerate(checked) if is_blank(item)), None)
        if blank is not None:
            raise ApiError(422, "empty_input", f"input {blank} has no text (empty or only whitespace); "
                           "no task can answer it")
        return inputs


async def unless_gone(work: Awaitable[Any], gone: Callable[[], Awaitable[None]] | None) -> Any:
    """`work`'s result, unless `gone()` returns first: then `work` is cancelled (a job still
    queued never reaches the model) and ApiError 499 is raised."""
    if gone is None:
        return await work
    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if not task.done() or task.cancelled():
        raise ApiError(499, "client_closed", "the client closed the connection before the answer")
    return task.result()


def server_of(request: Request) -> Server:
    """The Server of the app answering `request`."""
    return request.app.state.server
