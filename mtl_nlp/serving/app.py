"""`mtl-nlp serve`'s HTTP API on FastAPI: the app over one Predictor, with dynamic batching,
bounded queue and request sizes, JSON errors and an API key. The endpoints are in
serving.routes, the state they answer from in serving.server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtl_nlp.inference import Predictor
from mtl_nlp.serving.guard import DOCS_ASSETS, GuardAndMeasure, error_response
from mtl_nlp.serving.requests import ApiError
from mtl_nlp.serving.routes import router
from mtl_nlp.serving.server import Server, ServeSettings

logger = logging.getLogger(__name__)

__all__ = ["ServeSettings", "create_app"]


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> FastAPI:
    """The HTTP API over `predictor` (model loaded; warmed up at startup)."""
    server = Server(predictor, settings or ServeSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await server.start()
        yield
        await server.stop()

    # The docs pages load Swagger UI and ReDoc from the installed fastapi-offline package, not a
    # CDN: a server on a closed network shows them too.
    app = FastAPIOffline(title="mtl-nlp", lifespan=lifespan, static_url=DOCS_ASSETS.rstrip("/"),
                  description="Every task of one multi-task checkpoint from one encoder pass.")
    app.state.server = server
    # The last middleware added runs first: CORS before the guard, so that a browser's preflight
    # (which never carries the key) is answered, and a 401, 413 or 503 carries CORS headers.
    app.add_middleware(GuardAndMeasure, api_key=server.settings.api_key, queue_full=server.queue_full,
                       observe=server.metrics.observe, max_request_bytes=server.settings.max_request_bytes)
    if server.settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(server.settings.cors_origins),
                           allow_methods=["*"], allow_headers=["*"])
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, bug)
    app.include_router(router)
    return app


async def api_error(request: Request, error: ApiError) -> JSONResponse:
    return error_response(error)


async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    kind = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return error_response(ApiError(error.status_code, kind, f"{request.method} {request.url.path}: "
                                   f"{error.detail}"))


async def bug(request: Request, error: Exception) -> JSONResponse:
    logger.exception("error answering %s %s", request.method, request.url.path)
    return error_response(ApiError(500, "internal_error", "the server failed on this request; its log "
                                   "holds the traceback"))
