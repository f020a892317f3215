"""The deployment users have today, as serve_load's baseline: one exported task served by its own
process calling its transformers.pipeline, on the same framework as `mtl-nlp serve`.

    python -m recipes.benchmarks.pipeline_server EXPORT_DIR --port 8601
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI, Request
from transformers import AutoConfig, pipeline


def create_app(export_dir: str) -> FastAPI:
    config = AutoConfig.from_pretrained(export_dir)
    tagging = any(name.endswith("ForTokenClassification") for name in config.architectures or [])
    if tagging:
        task = pipeline("token-classification", model=export_dir, aggregation_strategy="first")
    else:
        task = pipeline("text-classification", model=export_dir)
    app = FastAPI()

    def plain(value: Any) -> Any:
        if isinstance(value, list):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value.item() if hasattr(value, "item") else value

    options = {} if tagging else {"truncation": True}  # a classifier pipeline does not cut long texts itself

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        body = await request.json()
        return plain(task(body["inputs"], **options))

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export_dir")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.export_dir), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
