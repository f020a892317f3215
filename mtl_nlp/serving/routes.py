"""The HTTP endpoints: /predict (every task from one encoder pass), /tasks/NAME in the Hugging Face
inference API's shape, /tasks, the try-it page, /health, /ready and /metrics. Each is a handler
of its own; the Server they answer from comes with the request."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mtl_nlp.serving.guard import error_response
from mtl_nlp.serving.requests import (
    ApiError,
    pipeline_answers,
    pipeline_request,
    predict_request,
    predictor_answers,
    read_json,
)
from mtl_nlp.serving.server import NOT_READY, server_of

PAGE = Path(__file__).with_name("page.html")  # a page to try the model: no build step, no CDN

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
        {"type": "object", "properties": {"text": {"type": "string"}, "text_pair": {"type": "string"}}}]},
        "parameters": {"type": "object", "properties": {"top_k": {
            "type": ["integer", "null"], "minimum": 1,
            "description": "classifiers: answer the k best labels (null: every label), best first"}}}}},
    "example": {"inputs": "Angela Merkel visited Paris ."}}}}}

router = APIRouter()


@router.post("/predict", summary="Every requested task's answer for each input, from one encoder pass",
             openapi_extra=PREDICT_BODY)
async def predict(request: Request) -> JSONResponse:
    server = server_of(request)
    inputs, tasks = predict_request(read_json(await request.body(), server.limits), server.limits)
    classifiers = {name for name, config in server.predictor.model.head_configs.items()
                   if config.type == "classification"}
    answers = await server.answer(inputs, tasks, partial(predictor_answers, classifiers),
                                  partial(disconnected, request))
    return JSONResponse(answers)


@router.post("/tasks/{name}", summary="One task's answers in the Hugging Face inference API's shape",
             openapi_extra=PIPELINE_BODY)
async def task_answers(name: str, request: Request) -> JSONResponse:
    server = server_of(request)
    predictor = server.predictor
    if name not in predictor.tasks:
        raise ApiError(404, "unknown_task", f"no task {name!r}; this model has: {', '.join(predictor.tasks)}")
    task_type = predictor.model.head_configs[name].type
    inputs, one, top_k = pipeline_request(read_json(await request.body(), server.limits), server.limits,
                                          task_type)
    # Shaped on the model thread: a tagger's entity words are read back by the tokenizer, which
    # must not run beside the model thread's (its truncation settings are shared state).
    shape = partial(pipeline_answers, task_type, name, predictor.tokenizer, inputs, one, top_k)
    return JSONResponse(await server.answer(inputs, [name], shape, partial(disconnected, request)))


async def disconnected(request: Request) -> None:
    """Returns once the client has closed the connection (the body has been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


INPUT_OF = {"multiple_choice": "choices", "extractive_qa": "question"}  # the other kinds: text or pair

@router.get("/tasks", summary="The model's tasks: type, labels and input kind")
async def task_list(request: Request) -> dict[str, Any]:
    head_configs = server_of(request).predictor.model.head_configs
    return {"tasks": [{"name": name, "type": config.type, "labels": list(config.labels),
                       "input": INPUT_OF.get(config.type, "pair" if config.text_pair else "text")}
                      for name, config in head_configs.items()]}


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


@router.get("/health", summary="The server is alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="The model is loaded and warmed up")
async def ready(request: Request) -> JSONResponse:
    if not server_of(request).ready:
        return error_response(ApiError(503, "not_ready", NOT_READY))
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics")
async def prometheus(request: Request) -> Response:
    return Response(generate_latest(server_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)
