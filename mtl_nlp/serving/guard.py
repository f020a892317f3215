"""The server's front door, as plain ASGI middleware: the API key, the body's size (checked as it
arrives, before anything is buffered), shedding load before any work once the model's queue is
full, and the request metrics. Plain ASGI rather than an
`@app.middleware("http")` function, which runs every request through extra tasks and streams:
under overload the front door must refuse far faster than the model answers."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mtl_nlp.serving.requests import ApiError

# Answered without the API key: the probes of load balancers, the page, which holds nothing
# secret and asks a person for the key when the API answers 401, and the API's docs (its schema
# and the docs' own scripts, served from the installed package: a browser sends no key for them).
OPEN_PATHS = ("/health", "/ready", "/", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")
DOCS_ASSETS = "/static-offline-docs/"
MODEL_PATHS = ("/predict", "/tasks/")  # POSTs to these wait for the model
UNAUTHORIZED = "this server needs its API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"


def error_response(error: ApiError) -> JSONResponse:
    """The JSON error body; a 503 says when to retry."""
    headers = {"Retry-After": "1"} if error.status == 503 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def has_key(headers: Headers, key: str) -> bool:
    """Whether the request carries `key` as `X-API-Key` or `Authorization: Bearer` (compared in
    constant time)."""
    given = headers.get("x-api-key") or ""
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        given = authorization[7:]
    return hmac.compare_digest(given.encode(), key.encode())


def endpoint_label(scope: Scope) -> str:
    """The route's path template for the metrics (`/tasks/{name}`), whether or not it ran."""
    route = getattr(scope.get("route"), "path", None)
    if route:
        return route
    path = scope["path"]
    return "/tasks/{name}" if path.startswith("/tasks/") else path if path == "/predict" else "unmatched"


class BodyTooLarge(ApiError):
    """A request body over the limit, found as it arrives."""

    def __init__(self, size: str, limit: int) -> None:
        super().__init__(413, "request_too_large", f"the request body has {size} bytes; the limit is {limit}")


class GuardAndMeasure:
    """Refuses a request without the API key (401), with a body over `max_request_bytes` (413,
    from its Content-Length or once the bytes arrived pass the limit) and, while `queue_full()`,
    a model request (503) before its body is read; counts every answer by endpoint and status,
    with latency."""

    def __init__(self, app: ASGIApp, api_key: str | None, queue_full: Callable[[], bool],
                 observe: Callable[[str, int, float], Any], max_request_bytes: int = 1 << 20) -> None:
        self.app, self.api_key, self.queue_full, self.observe = app, api_key, queue_full, observe
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self.refusal(scope)
            if refusal is None:
                await self.app(scope, self.counting(receive), send_noting_status)
            else:
                await error_response(refusal)(scope, receive, send_noting_status)
        finally:
            self.observe(endpoint_label(scope), status, time.perf_counter() - started)

    def refusal(self, scope: Scope) -> ApiError | None:
        """Why the request is refused before its body is read, or None."""
        path, headers = scope["path"], Headers(scope=scope)
        open_path = path in OPEN_PATHS or path.startswith(DOCS_ASSETS)
        if self.api_key and not open_path and not has_key(headers, self.api_key):
            return ApiError(401, "unauthorized", UNAUTHORIZED)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_request_bytes:
            return BodyTooLarge(length, self.max_request_bytes)
        if scope["method"] == "POST" and path.startswith(MODEL_PATHS) and self.queue_full():
            return ApiError(503, "overloaded", "the server's queue is full; retry later")
        return None

    def counting(self, receive: Receive) -> Receive:
        """`receive`, raising BodyTooLarge (answered 413 by the app) once the body's bytes pass
        the limit: a body without Content-Length (chunked) is not read to its end first."""
        received = 0

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_request_bytes:
                    raise BodyTooLarge(f"over {self.max_request_bytes}", self.max_request_bytes)
            return message

        return receive_counted
