"""Peak memory of a streamed training task against the same task in memory, as the file grows.

    python -m recipes.benchmarks.stream_memory TOKENIZER_DIR [--rows 20000 200000] [--workdir DIR]

For each size, a JSON-lines classification file of that many rows is written, and a fresh process
prepares the task (counting pass, label pass, tokenization) and draws one epoch of its training
batches through the multi-task loader, once with `streaming: true` and once in memory. The table
gives each process's peak resident memory (ru_maxrss) and the rows per second it went through.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from .machine import describe_machine

WORDS = ("the film was good bad long dull bright quiet story actor scene music plot ending "
         "slow fast funny sad brilliant boring").split()

CHILD = """
import json, resource, sys, time
from transformers import AutoTokenizer
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.registry import TaskSpec
tokenizer_dir, train, validation, streaming, cache = sys.argv[1:6]
started = time.perf_counter()
spec = TaskSpec(name="reviews", type="classification", format="json", streaming=streaming == "1",
                data_files={"train": train, "validation": validation})
tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
tasks = prepare_task_data([spec], tokenizer, max_length=64, cache_dir=cache)
loader = MultiTaskLoader(tasks, tokenizer, batch_size=32, seed=0)
rows = 0
batches = iter(loader)
for _ in range(loader.batches_per_epoch):
    rows += len(next(batches)[1]["labels"])
seconds = time.perf_counter() - started
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": rows, "seconds": seconds}))
"""


def write_rows(path: Path, rows: int, seed: int = 0) -> None:
    """`rows` JSON lines of 8-40 random words with a positive/negative label."""
    rng = random.Random(seed)
    with path.open("w") as handle:
        for _ in range(rows):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
            handle.write(json.dumps({"text": text, "label": rng.choice(["negative", "positive"])}) + "\n")


def measure(tokenizer_dir: str, train: Path, validation: Path, streaming: bool, cache: Path) -> dict:
    """One fresh process: prepare the task and draw one epoch; its peak memory and time."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, tokenizer_dir, str(train), str(validation), "1" if streaming else "0",
         str(cache)], capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tokenizer", help="a tokenizer folder (e.g. the default encoder's)")
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--workdir", help="where to write the files (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.workdir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        validation = work / "validation.jsonl"
        write_rows(validation, 200, seed=1)
        print(describe_machine())
        print("| rows in train file | file MB | streamed: peak MB | streamed: rows/s | in memory: peak MB "
              "| in memory: rows/s |")
        print("|---:|---:|---:|---:|---:|---:|")
        for rows in args.rows:
            train = work / f"train-{rows}.jsonl"
            write_rows(train, rows)
            streamed = measure(args.tokenizer, train, validation, True, work / f"cache-s-{rows}")
            in_memory = measure(args.tokenizer, train, validation, False, work / f"cache-m-{rows}")
            size = train.stat().st_size / 2**20
            cells = [f"{rows:,}", f"{size:.1f}"]
            for run in (streamed, in_memory):
                cells += [f"{run['peak_mb']:.0f}", f"{run['rows'] / run['seconds']:,.0f}"]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
