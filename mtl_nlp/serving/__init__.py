"""`mtl-nlp serve`: a multi-task checkpoint behind an HTTP API (FastAPI, uvicorn), with dynamic
batching across concurrent requests. Needs the `serve` extra: pip install "mtl-nlp[serve]"."""
