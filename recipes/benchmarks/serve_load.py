"""Load on `mtl-nlp serve` against the deployment users have today (each task exported and served
by its own process calling its transformers.pipeline), over loopback only.

    python -m recipes.benchmarks.serve_load CHECKPOINT --data-dir ../shared/data \\
        [--concurrency 1 8 32] [--requests 2000] [--server-threads 1] [--server-cores 0] \\
        [--precision auto] [--overload-seconds 60]

First times `Predictor.predict` on one text at a time in this process (the in-process p50 the
server's concurrency-1 latency is held to), on the servers' threads and cores. Then starts each
server itself on 127.0.0.1 (the three pipeline servers for the checkpoint's exports, then
`mtl-nlp serve`), sends the 2,000 benchmark sentences (CoNLL-2003 test + SST-2 test) at each
concurrency with a fixed request count (one sentence a request, every task answered), and prints
texts/s and p50/p99 latency for each. The servers get `--server-threads` torch threads pinned to
`--server-cores` (taskset, where available); the client runs on what is left.

With `--overload-seconds`, `mtl-nlp serve` then gets twice its measured capacity (the texts/s at
the highest concurrency) as an open-loop arrival rate for that long: the report counts answers
by status with their latencies, the server's resident memory before, at most and after, whether
it still answers /health, and how many accepted answers equal the in-process Predictor's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .inference_backends import agreement
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
    import aiohttp

    for url in urls:
        check_loopback(url)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    latencies: list[float] = []

    async def post(client: aiohttp.ClientSession, url: str, text: str) -> None:
        async with client.post(url, json={"inputs": [text]}) as response:
            response.raise_for_status()
            await response.read()

    connector = aiohttp.TCPConnector(limit=concurrency * len(urls))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as client:
        async def worker() -> None:
            while not queue.empty():
                text = queue.get_nowait()
                started = time.perf_counter()
                await asyncio.gather(*(post(client, url, text) for url in urls))
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return summarize(latencies, time.perf_counter() - started)


def in_process_latency(checkpoint: str, texts: list[str], threads: int, cores: str | None,
                       precision: str) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """p50/p99 of `Predictor.predict` on one text at a time in this process, on `threads` torch
    threads pinned to `cores` (as the servers run), and the answers for every text."""
    import torch

    from mtl_nlp.inference import Predictor

    predictor = Predictor.from_pretrained(checkpoint, mixed_precision=precision, device="cpu")
    former_threads, former_cores = torch.get_num_threads(), os.sched_getaffinity(0)
    torch.set_num_threads(threads)
    if cores:
        os.sched_setaffinity(0, parse_cores(cores))
    try:
        for text in texts[:32]:  # warm up
            predictor.predict(text)
        latencies, answers = [], []
        for text in texts:
            started = time.perf_counter()
            answers.append(predictor.predict(text))
            latencies.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(former_threads)
        os.sched_setaffinity(0, former_cores)
    return summarize(latencies, sum(latencies)), answers


def parse_cores(cores: str) -> set[int]:
    """taskset's core list ("0", "0,2", "0-3") as a set."""
    chosen: set[int] = set()
    for part in cores.split(","):
        first, _, last = part.partition("-")
        chosen.update(range(int(first), int(last or first) + 1))
    return chosen


def resident_mib(pid: int) -> float:
    """The process's resident memory in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def overload(url: str, texts: list[str], rate: float, seconds: float, pid: int) -> dict[str, Any]:
    """Open-loop arrivals at `rate` requests/s for `seconds` (one text each, cycling `texts`):
    latency by status, the server's memory, and the accepted answers by text index."""
    import aiohttp

    check_loopback(url)
    outcomes: list[tuple[str, float]] = []
    accepted: dict[int, dict[str, Any]] = {}
    memory = [resident_mib(pid)]

    connector = aiohttp.TCPConnector(limit=0)  # every arrival gets its connection: open loop
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as client:
        async def one(index: int) -> None:
            text_index = index % len(texts)
            started = time.perf_counter()
            try:
                async with client.post(url, json={"inputs": [texts[text_index]]}) as response:
                    status = str(response.status)
                    if response.status == 200:
                        accepted[text_index] = (await response.json())[0]
                    else:
                        await response.read()
            except aiohttp.ClientError as error:
                status = type(error).__name__
            outcomes.append((status, time.perf_counter() - started))

        async def watch_memory() -> None:
            while True:
                await asyncio.sleep(1)
                memory.append(resident_mib(pid))

        watcher = asyncio.create_task(watch_memory())
        requests = []
        started = time.perf_counter()
        for index in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
            requests.append(asyncio.create_task(one(index)))
        offered_seconds = time.perf_counter() - started
        await asyncio.gather(*requests)
        watcher.cancel()
        async with client.get(url.replace("/predict", "/health")) as response:
            alive = response.status == 200
    by_status: dict[str, list[float]] = {}
    for status, latency in outcomes:
        by_status.setdefault(status, []).append(latency)
    latency_by_status = {}
    for status, values in sorted(by_status.items()):
        latency_by_status[status] = (len(values), 1000 * percentile(values, 0.5),
                                     1000 * percentile(values, 0.99))
    return {"offered_per_second": len(outcomes) / offered_seconds, "alive": alive, "accepted": accepted,
            "memory_mib": (memory[0], max(memory), resident_mib(pid)), "by_status": latency_by_status,
            "memory_every_10_s": memory[::10]}


def report_overload(result: dict[str, Any], reference: list[dict[str, Any]]) -> None:
    """Print the overload run and how many accepted answers equal the in-process Predictor's."""
    before, most, after = result["memory_mib"]
    print(f"offered {result['offered_per_second']:.1f} requests/s; server alive afterwards: "
          f"{result['alive']}; resident memory {before:.0f} MiB before, {most:.0f} MiB at most, "
          f"{after:.0f} MiB after")
    trace = ", ".join(f"{mib:.0f}" for mib in result["memory_every_10_s"])
    print(f"resident memory every 10 s (MiB): {trace}")
    for status, (count, p50, p99) in result["by_status"].items():
        print(f"| {status} | {count} | {p50:.1f} | {p99:.1f} |")
    indexes = sorted(result["accepted"])
    shares = agreement([result["accepted"][index] for index in indexes],
                       [reference[index] for index in indexes])
    print(f"{len(indexes)} distinct accepted texts; share equal to the in-process Predictor's answer: "
          + ", ".join(f"{task} {share:.4f}" for task, share in shares.items()))


def start(command: list[str], ready_url: str, threads: int, cores: str | None) -> subprocess.Popen:
    """A server process with `threads` torch threads (pinned to `cores`), once `ready_url` answers."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if cores and shutil.which("taskset"):
        command = ["taskset", "-c", cores, *command]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:  # not listening yet, or 503 while it warms up
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
    parser.add_argument("--precision", choices=("auto", "no", "bf16"), default="auto",
                        help="mtl-nlp serve's and the in-process Predictor's (the pipelines run fp32)")
    parser.add_argument("--serve-args", default="", help="more `mtl-nlp serve` options ('--max-wait-ms 0')")
    parser.add_argument("--serve-only", action="store_true", help="leave out the pipeline servers")
    parser.add_argument("--overload-seconds", type=float, default=0,
                        help="then send twice the measured capacity to mtl-nlp serve for this long")
    args = parser.parse_args()
    texts = benchmark_texts(["conll2003", "sst2"], args.data_dir, args.requests)
    print(describe_machine())
    print(f"{len(texts)} texts, one a request; servers: {args.server_threads} torch thread(s) on cores "
          f"{args.server_cores}; client: the other cores")
    alone, reference = in_process_latency(args.checkpoint, texts, args.server_threads, args.server_cores,
                                          args.precision)
    print(f"in-process Predictor.predict, one text at a time: p50 {alone['p50_ms']:.1f} ms, "
          f"p99 {alone['p99_ms']:.1f} ms", flush=True)
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
                [[sys.executable, "-m", "mtl_nlp.cli", "serve", args.checkpoint, "--port", str(args.port),
                  "--precision", args.precision, "--device", "cpu", *shlex.split(args.serve_args)]],
                [f"http://127.0.0.1:{args.port}/predict"]),
            f"{len(tasks)} pipeline servers (one per task)": (
                [[sys.executable, "-m", "recipes.benchmarks.pipeline_server", str(exports[task]), "--port",
                  str(args.port + 1 + index)] for index, task in enumerate(tasks)],
                [f"http://127.0.0.1:{args.port + 1 + index}/predict" for index in range(len(tasks))]),
        }
        for label, (commands, urls) in arms.items():
            if args.serve_only and not label.startswith("mtl-nlp serve"):
                continue
            servers = [start(command, url.replace("/predict", "/ready"), args.server_threads,
                             args.server_cores) for command, url in zip(commands, urls)]
            try:
                for concurrency in args.concurrency:
                    asyncio.run(send_all(urls, texts[:32], concurrency))  # warm up
                    result = asyncio.run(send_all(urls, texts, concurrency))
                    print(f"| {label} | {concurrency} | {result['texts_per_second']:.1f} | "
                          f"{result['p50_ms']:.1f} | {result['p99_ms']:.1f} |", flush=True)
                if args.overload_seconds and label.startswith("mtl-nlp serve"):
                    rate = 2 * result["texts_per_second"]
                    print(f"overload: {rate:.1f} requests/s (twice {result['texts_per_second']:.1f}) for "
                          f"{args.overload_seconds:.0f} s", flush=True)
                    report_overload(asyncio.run(overload(urls[0], texts, rate, args.overload_seconds,
                                                         servers[0].pid)), reference)
            finally:
                for server in servers:
                    server.terminate()
                    server.wait(timeout=60)


if __name__ == "__main__":
    main()
