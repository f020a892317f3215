"""`mtl-nlp` command line: predict with a checkpoint, list the registered tasks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from mtl_nlp.registry import get_task, list_tasks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtl-nlp", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="predict every task for each input line; one JSON line out per line in"
    )
    predict.add_argument("checkpoint", help="a checkpoint directory (a run's output_dir)")
    predict.add_argument("input", nargs="?", default="-", help="text file, one text a line (- = stdin)")
    predict.add_argument("--tasks", help="comma-separated subset of the checkpoint's tasks")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    commands.add_parser("tasks", help="list the registered tasks")
    return parser


def read_lines(source: TextIO) -> Iterator[str]:
    for line in source:
        yield line.rstrip("\n").rstrip("\r")


def run_predict(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.inference import Predictor, to_json_line

    predictor = Predictor.from_pretrained(args.checkpoint, batch_size=args.batch_size, device=args.device)
    tasks = args.tasks.split(",") if args.tasks else None
    if args.input == "-":
        lines = list(read_lines(sys.stdin))
    else:
        path = Path(args.input)
        if not path.is_file():
            raise FileNotFoundError(f"input file not found: {path}")
        with path.open(encoding="utf-8") as handle:
            lines = list(read_lines(handle))
    for result in predictor.predict(lines, tasks=tasks):
        out.write(to_json_line(result) + "\n")
    return 0


def run_tasks(out: TextIO) -> int:
    import mtl_nlp  # noqa: F401  (registers the built-in tasks)

    for name in list_tasks():
        spec = get_task(name)
        out.write(f"{name:<16} {spec.type:<22} {spec.description}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "predict":
            return run_predict(args, sys.stdout)
        return run_tasks(sys.stdout)
    except (OSError, ValueError, KeyError) as exc:
        print(f"mtl-nlp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
