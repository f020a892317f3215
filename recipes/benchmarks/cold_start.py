"""Cold start: from a fresh `python` to the first answer, for the Predictor, `mtl-nlp predict` on
one line, and the bare encoder loaded with transformers (import + from_pretrained + one call).

    python -m recipes.benchmarks.cold_start CHECKPOINT [--repeats 5] [--before PATH]

Each case runs in a fresh process, the cases taking turns, `--repeats` times; the table gives the
median wall seconds and the ratio to the bare encoder. `--before PATH` adds the same Predictor
and CLI cases with the mtl_nlp package found at PATH (another checkout) first on PYTHONPATH, to
compare two versions in one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from .machine import describe_machine

TEXT = "Angela Merkel visited Paris."
BARE = (
    "import torch; from transformers import AutoModel, AutoTokenizer; "
    "d = {dir!r}; tok = AutoTokenizer.from_pretrained(d); model = AutoModel.from_pretrained(d).eval(); "
    "torch.no_grad().__enter__(); model(**tok([{text!r}], return_tensors='pt'))"
)
PREDICTOR = "from mtl_nlp import Predictor; Predictor.from_pretrained({dir!r}).predict([{text!r}])"
CLI = "import sys; from mtl_nlp.cli import main; sys.exit(main(['predict', {dir!r}]))"


def run_once(code: str, stdin: str | None, pythonpath: str | None) -> float:
    """Wall seconds of one fresh `python -c code`."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], input=stdin, text=True, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="an mtl_nlp checkpoint directory (real encoder)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", help="another checkout whose mtl_nlp to time as well")
    args = parser.parse_args()
    fill = {"dir": args.checkpoint, "text": TEXT}
    cases = {
        "bare encoder (transformers)": (BARE.format(**fill), None, None),
        "Predictor": (PREDICTOR.format(**fill), None, None),
        "mtl-nlp predict, one line": (CLI.format(**fill), TEXT + "\n", None),
    }
    if args.before:
        cases["Predictor (before)"] = (PREDICTOR.format(**fill), None, args.before)
        cases["mtl-nlp predict, one line (before)"] = (CLI.format(**fill), TEXT + "\n", args.before)
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for case in cases.values():  # warm the file cache once
        run_once(*case)
    for _ in range(args.repeats):
        for name, case in cases.items():
            seconds[name].append(run_once(*case))
    bare = statistics.median(seconds["bare encoder (transformers)"])
    print(describe_machine())
    print(f"| case | median seconds ({args.repeats} runs) | ratio to the bare encoder |")
    print("|---|---|---|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / bare:.2f} |")


if __name__ == "__main__":
    main()
