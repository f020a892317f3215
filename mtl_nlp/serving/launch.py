"""Starting the server: one process, or `workers` processes (one per core or GPU) that each load
the checkpoint, behind uvicorn; what the processes load travels in an environment variable."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from mtl_nlp.common.errors import MtlNlpError
from mtl_nlp.serving.app import ServeSettings, create_app

SERVE_CONFIG_VARIABLE = "MTL_NLP_SERVE_CONFIG"  # JSON: checkpoint, predictor options, settings
API_KEY_VARIABLE = "MTL_NLP_API_KEY"  # the API key, kept off the command line (and `ps`)
GRACEFUL_SHUTDOWN_S = 30  # after SIGTERM, the longest wait for accepted requests


def serve(checkpoint: str, host: str, port: int, workers: int, predictor_options: dict[str, Any],
          settings: ServeSettings) -> None:
    """Serve `checkpoint` until SIGTERM or Ctrl-C: stop accepting, answer what was accepted, exit."""
    try:
        import uvicorn
    except ImportError:
        raise MtlNlpError('mtl-nlp serve needs its extra: pip install "mtl-nlp[serve]"') from None
    options = {"host": host, "port": port, "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
               "log_level": "info"}
    if workers == 1:
        app = build_app(checkpoint, predictor_options, settings)
        graceful_server(uvicorn)(uvicorn.Config(app, **options)).run()
        return
    os.environ[SERVE_CONFIG_VARIABLE] = json.dumps(
        {"checkpoint": checkpoint, "predictor": predictor_options, "settings": asdict(settings)})
    uvicorn.run("mtl_nlp.serving.launch:app_from_environment", factory=True, workers=workers, **options)


def graceful_server(uvicorn: Any) -> type:
    """uvicorn's Server, except that a stop by SIGTERM or SIGINT, once every accepted request is
    answered, ends the process with exit code 0 (uvicorn re-raises the signal, which a process
    supervisor reads as a crash)."""

    class GracefulServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer


def build_app(checkpoint: str, predictor_options: dict[str, Any], settings: ServeSettings):
    from mtl_nlp.inference import Predictor

    return create_app(Predictor.from_pretrained(checkpoint, **predictor_options), settings)


def app_from_environment():
    """The app of one worker process, from SERVE_CONFIG_VARIABLE (uvicorn's factory)."""
    config = json.loads(os.environ[SERVE_CONFIG_VARIABLE])
    settings = config["settings"]
    settings["cors_origins"] = tuple(settings["cors_origins"])
    return build_app(config["checkpoint"], config["predictor"], ServeSettings(**settings))
