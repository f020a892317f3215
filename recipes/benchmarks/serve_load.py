"""Load on `mtl-nlp serve` against the deployment users have today (each task exported and served
by its own process calling its transformers.pipeline), over loopback only.

    python -m recipes.benchmarks.serve_load CHECKPOINT --data-dir ../shared/data \\
        [--concurrency 1 8 32] [--requests 2000] [--server-threads 1] [--server-cores 0]

Starts each server itself on 127.0.0.1 (the three pipeline servers for the checkpoint's exports,
then `mtl-nlp serve`), sends the 2,000 benchmark sentences (CoNLL-2003 test + SST-2 test) at each
concurrency with a fixed request count (one sentence a request, every task answered), and prints
texts/s and p50/p99 latency for each. The servers get `--server-threads` torch threads pinned to
`--server-cores` (taskset, where available); the client runs on what is left.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from .inference_timing import benchmark_texts
from .machine import describe_machine

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_loopback(url: str) -> None:
    """The load generator only ever targets this machine."""
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"serve_load only sends to loopback addresses, not {host!r}")


def percentile(values: list[float], share: float) -> float:
    """The `share` percentile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-share * len(ordered) // 1))))
    return ordered[rank - 1]


def summarize(latencies: list[float], seconds: float) -> dict[str, float]:
    """texts/s over the run and p50/p99 latency in ms."""
    return {"texts_per_second": len(latencies) / seconds, "p50_ms": 1000 * percentile(latencies, 0.50),
            "p99_ms": 1000 * percentile(latencies, 0.99), "mean_ms": 1000 * statistics.mean(latencies)}


async def send_all(urls: list[str], texts: list[str], concurrency: int) -> dict[str, float]:
    """Every text sent to every url in `urls` (all must answer before the text counts), with at
    most `concurrency` texts in flight; latency is the text's, from first send to last answer."""
    import httpx

    for url in urls:
        check_loopback(url)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency * len(urls))

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def worker() -> None:
            while not queue.empty():
                text = queue.get_nowait()
                started = time.perf_counter()
                responses = await asyncio.gather(*(client.post(url, json={"inputs": [text]}) for url in urls))
                for response in responses:
                    response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return summarize(latencies, time.perf_counter() - started)


def start(command: list[str], ready_url: str, threads: int, cores: str | None) -> subprocess.Popen:
    """A server process with `threads` torch threads (pinned to `cores`), once `ready_url` answers."""
    import httpx

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if cores and shutil.which("taskset"):
        command = ["taskset", "-c", cores, *command]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(ready_url, timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{' '.join(command)} did not start: {process.communicate()[1][-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--concurrency", nargs="*", type=int, default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--server-threads", type=int, default=1)
    parser.add_argument("--server-cores", default="0", help="taskset core list of the servers")
    parser.add_argument("--port", type=int, default=8600)
    args = parser.parse_args()
    texts = benchmark_texts(["conll2003", "sst2"], args.data_dir, args.requests)
    print(describe_machine())
    print(f"{len(texts)} texts, one a request; servers: {args.server_threads} torch thread(s) on cores "
          f"{args.server_cores}; client: the other cores")
    from mtl_nlp.modeling.model import read_checkpoint_config

    heads = read_checkpoint_config(args.checkpoint)["tasks"]
    tasks = [head["name"] for head in heads if not head["text_pair"]]
    with tempfile.TemporaryDirectory(prefix="mtl-nlp-serve-load-") as work:
        exports = {}
        for task in tasks:
            subprocess.run([sys.executable, "-m", "mtl_nlp.cli", "export", args.checkpoint, "--task", task,
                            str(Path(work) / task)], check=True, capture_output=True)
            exports[task] = Path(work) / task
        arms = {
            "mtl-nlp serve (one server, every task)": (
                [[sys.executable, "-m", "mtl_nlp.cli", "serve", args.checkpoint, "--port", str(args.port)]],
                [f"http://127.0.0.1:{args.port}/predict"]),
            f"{len(tasks)} pipeline servers (one per task)": (
                [[sys.executable, "-m", "recipes.benchmarks.pipeline_server", str(exports[task]), "--port",
                  str(args.port + 1 + index)] for index, task in enumerate(tasks)],
                [f"http://127.0.0.1:{args.port + 1 + index}/predict" for index in range(len(tasks))]),
        }
        for label, (commands, urls) in arms.items():
            servers = [start(command, url.replace("/predict", "/ready"), args.server_threads,
                             args.server_cores) for command, url in zip(commands, urls)]
            try:
                for concurrency in args.concurrency:
                    asyncio.run(send_all(urls, texts[:32], concurrency))  # warm up
                    result = asyncio.run(send_all(urls, texts, concurrency))
                    print(f"| {label} | {concurrency} | {result['texts_per_second']:.1f} | "
                          f"{result['p50_ms']:.1f} | {result['p99_ms']:.1f} |", flush=True)
            finally:
                for server in servers:
                    server.terminate()
                    server.wait(timeout=60)


if __name__ == "__main__":
    main()
