"""What one running server holds: the Predictor, its settings, the batching queue, readiness and
the Prometheus metrics. The routes (serving.routes) reach it through the request's app."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mtl_nlp.inference import Predictor, PredictorInputError, UnknownTaskError
from mtl_nlp.serving.batching import DynamicBatcher, Overloaded
from mtl_nlp.serving.requests import ApiError, Limits

CHARACTERS_PER_TOKEN = 4  # for sizing batches; English subword tokenizers average about this
NOT_READY = "the model is still loading or the server is stopping"


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches, bounds and guards its work (the `mtl-nlp serve` options)."""

    max_batch_tokens: int = 8192  # a batch closes once its inputs hold about this many tokens ...
    max_wait_ms: float = 0.0  # ... or once its first request has waited this long (what queued
    # while the last batch ran joins at once: under load batches form without waiting)
    max_queue: int = 512  # requests waiting for the model; more are answered 503 at once
    max_inputs: int = 256  # inputs per request
    max_request_bytes: int = 1 << 20
    timeout_s: float = 30.0  # a request not answered by then gets 504
    api_key: str | None = None  # every endpoint but /health then needs it
    cors_origins: tuple[str, ...] = ()  # origins a browser page may call from (none: CORS off)


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

    def count_tokens(self, inputs: list[Any]) -> int:
        """An estimate (4 characters a token, at most max_length an input): tokenizing here too
        would run the tokenizer twice per request, once of them on the event loop."""
        texts = [item if isinstance(item, str) else " ".join(item) for item in inputs]
        return sum(min(self.predictor.max_length, 2 + len(text) // CHARACTERS_PER_TOKEN) for text in texts)

    def run_batch(self, inputs: list[Any], tasks: list[str] | None) -> list[dict[str, Any]]:
        """One model call over merged requests (on the batcher's model thread)."""
        self.metrics.batch_inputs.observe(len(inputs))
        return self.predictor.predict([tuple(item) if isinstance(item, list) else item for item in inputs],
                                      tasks)

    def queue_full(self) -> bool:
        return self.batcher is not None and self.batcher.queue.full()

    async def start(self) -> None:
        """Start the batching queue and warm the model up: one request of each input kind the
        model takes, so the first user does not pay for it."""
        settings = self.settings
        self.batcher = DynamicBatcher(self.run_batch, self.count_tokens, settings.max_batch_tokens,
                                      settings.max_wait_ms, settings.max_queue)
        self.batcher.start()
        self.metrics.queue_depth.set_function(self.batcher.queue.qsize)
        if len(self.predictor.pair_tasks) < len(self.predictor.tasks):
            await self.batcher.submit(["warm up"], None)
        if self.predictor.pair_tasks:
            await self.batcher.submit([["warm up", "warm up"]], None)
        self.ready = True

    async def stop(self) -> None:
        """Stop taking requests and answer what was accepted before the shutdown."""
        self.ready = False
        if self.batcher is not None:
            await self.batcher.drain()

    async def answer(self, inputs: list[Any], tasks: list[str] | None) -> list[dict[str, Any]]:
        """The Predictor's answers for one request's inputs, through the batching queue; ApiError
        for inputs it refuses, a server not ready, a full queue or a timeout."""
        try:
            self.predictor.check_inputs(inputs, tasks)
        except UnknownTaskError as error:
            raise ApiError(422, "unknown_task", str(error)) from None
        except PredictorInputError as error:
            raise ApiError(422, "invalid_inputs", str(error)) from None
        if not self.ready or self.batcher is None:
            raise ApiError(503, "not_ready", NOT_READY)
        try:
            return await asyncio.wait_for(self.batcher.submit(inputs, tasks), self.settings.timeout_s)
        except Overloaded as error:
            raise ApiError(503, "overloaded", f"{error}; retry later") from None
        except TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {self.settings.timeout_s:g} s") from None


def server_of(request: Request) -> Server:
    """The Server of the app answering `request`."""
    return request.app.state.server
