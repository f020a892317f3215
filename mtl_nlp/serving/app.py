"""`mtl-nlp serve`'s HTTP API on FastAPI: /predict (every task from one encoder pass), the
per-task endpoints in the Hugging Face inference API's shape, /tasks, /health, /ready and
/metrics, with dynamic batching, bounded queue and request sizes, JSON errors and an API key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtl_nlp.inference import Predictor, PredictorInputError, UnknownTaskError
from mtl_nlp.serving.batching import DynamicBatcher, Overloaded
from mtl_nlp.serving.guard import GuardAndMeasure, error_response
from mtl_nlp.serving.requests import (
    ApiError,
    Limits,
    pipeline_answer,
    pipeline_request,
    predict_request,
    read_json,
)

logger = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")  # a page to try the model: no build step, no CDN
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


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> FastAPI:
    """The HTTP API over `predictor` (model loaded; warmed up at startup)."""
    settings = settings or ServeSettings()
    limits = Limits(settings.max_request_bytes, settings.max_inputs)
    metrics = ServerMetrics()
    state: dict[str, Any] = {"ready": False}

    def count_tokens(inputs: list[Any]) -> int:
        """An estimate (4 characters a token, at most max_length an input): tokenizing here too
        would run the tokenizer twice per request, once of them on the event loop."""
        texts = [item if isinstance(item, str) else " ".join(item) for item in inputs]
        return sum(min(predictor.max_length, 2 + len(text) // CHARACTERS_PER_TOKEN) for text in texts)

    def run_batch(inputs: list[Any], tasks: list[str] | None) -> list[dict[str, Any]]:
        metrics.batch_inputs.observe(len(inputs))
        return predictor.predict([tuple(item) if isinstance(item, list) else item for item in inputs], tasks)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher = DynamicBatcher(run_batch, count_tokens, settings.max_batch_tokens, settings.max_wait_ms,
                                 settings.max_queue)
        batcher.start()
        metrics.queue_depth.set_function(batcher.queue.qsize)
        state["batcher"] = batcher
        await warm_up(batcher)
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.drain()  # answer what was accepted before the shutdown

    async def warm_up(batcher: DynamicBatcher) -> None:
        """One request of each input kind the model takes, so the first user does not pay for it."""
        if len(predictor.pair_tasks) < len(predictor.tasks):
            await batcher.submit(["warm up"], None)
        if predictor.pair_tasks:
            await batcher.submit([["warm up", "warm up"]], None)

    app = FastAPI(title="mtl-nlp", lifespan=lifespan,
                  description="Every task of one multi-task checkpoint from one encoder pass.")
    app.state.serving = state
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"])

    def observe(endpoint: str, status: int, seconds: float) -> None:
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.latency.labels(endpoint).observe(seconds)

    def queue_full() -> bool:
        batcher = state.get("batcher")
        return batcher is not None and batcher.queue.full()

    app.add_middleware(GuardAndMeasure, api_key=settings.api_key, queue_full=queue_full, observe=observe)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(ApiError(error.status_code, kind, f"{request.method} {request.url.path}: "
                                       f"{error.detail}"))

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        logger.exception("error answering %s %s", request.method, request.url.path)
        return error_response(ApiError(500, "internal_error", "the server failed on this request; its log "
                                       "holds the traceback"))

    async def answer(inputs: list[Any], tasks: list[str] | None) -> list[dict[str, Any]]:
        try:
            predictor.check_inputs(inputs, tasks)
        except UnknownTaskError as error:
            raise ApiError(422, "unknown_task", str(error)) from None
        except PredictorInputError as error:
            raise ApiError(422, "invalid_inputs", str(error)) from None
        if not state["ready"]:
            raise ApiError(503, "not_ready", NOT_READY)
        try:
            return await asyncio.wait_for(state["batcher"].submit(inputs, tasks), settings.timeout_s)
        except Overloaded as error:
            raise ApiError(503, "overloaded", f"{error}; retry later") from None
        except TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {settings.timeout_s:g} s") from None

    @app.post("/predict", summary="Every requested task's answer for each input, from one encoder pass",
              openapi_extra=PREDICT_BODY)
    async def predict(request: Request) -> JSONResponse:
        inputs, tasks = predict_request(read_json(await request.body(), limits), limits)
        return JSONResponse(await answer(inputs, tasks))

    @app.post("/tasks/{name}", summary="One task's answers in the Hugging Face inference API's shape",
              openapi_extra=PIPELINE_BODY)
    async def task_endpoint(name: str, request: Request) -> JSONResponse:
        if name not in predictor.tasks:
            raise ApiError(404, "unknown_task",
                           f"no task {name!r}; this model has: {', '.join(predictor.tasks)}")
        inputs, one = pipeline_request(read_json(await request.body(), limits), limits)
        answers = await answer(inputs, [name])
        task_type = predictor.model.head_configs[name].type
        shaped = [pipeline_answer(task_type, result[name], predictor.tokenizer,
                                  item if isinstance(item, str) else item[0])
                  for result, item in zip(answers, inputs)]
        if not one:
            return JSONResponse(shaped)
        # one input: the pipeline answers a tagger with its entities, a classifier with [answer]
        return JSONResponse(shaped[0] if task_type == "token_classification" else [shaped[0]])

    @app.get("/tasks", summary="The model's tasks: type, labels and input kind")
    async def tasks() -> dict[str, Any]:
        return {"tasks": [{"name": name, "type": config.type, "labels": list(config.labels),
                           "input": "pair" if config.text_pair else "text"}
                          for name, config in predictor.model.head_configs.items()]}

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/health", summary="The server is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="The model is loaded and warmed up")
    async def ready() -> JSONResponse:
        if not state["ready"]:
            return error_response(ApiError(503, "not_ready", NOT_READY))
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


TEXT_OR_PAIR = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"},
                                                "minItems": 2, "maxItems": 2}]}
PREDICT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["inputs"], "properties": {
        "inputs": {"type": "array", "items": TEXT_OR_PAIR,
                   "description": "texts, or [text, text_pair] pairs"},
        "tasks": {"type": "array", "items": {"type": "string"}, "description": "default: every task"}}},
    "example": {"inputs": ["Angela Merkel visited Paris ."], "tasks": None}}}}}
PIPELINE_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["inputs"], "properties": {"inputs": {"oneOf": [
        {"type": "string"}, {"type": "array", "items": {"type": "string"}},
        {"type": "object", "properties": {"text": {"type": "string"}, "text_pair": {"type": "string"}}}]}}},
    "example": {"inputs": "Angela Merkel visited Paris ."}}}}}
