"""`mtl-nlp` command line: predict with a checkpoint, list the registered tasks, compare runs."""

from __future__ import annotations

import argparse
import json
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
    predict.add_argument(
        "input", nargs="?", default="-",
        help="text file, one input a line (- = stdin); `text<TAB>text_pair` is a pair for sentence-pair "
        "tasks, a line without a TAB a single text for the other tasks",
    )
    predict.add_argument("--tasks", help="comma-separated subset of the checkpoint's tasks")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    commands.add_parser("tasks", help="list the registered tasks")
    add_compare_parser(commands)
    return parser


COMPARE_EXAMPLE = """\
example: a multi-task run against its single-task runs
  mtl-nlp compare outputs/mtl outputs/stl_ner outputs/stl_sst2

test main metric per task; in brackets: the difference to the first run (run - outputs/mtl)
| task            | metric   | outputs/mtl |     outputs/stl_ner |    outputs/stl_sst2 |
|:----------------|:---------|------------:|--------------------:|--------------------:|
| ner             | f1       |      0.8270 |    0.8401 (+0.0131) |                   - |
| sst2            | accuracy |      0.9000 |                   - |    0.8956 (-0.0044) |
| mean difference |          |             | +0.0131 over 1 task | -0.0044 over 1 task |
"""


def add_compare_parser(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "compare", help="compare runs' test scores task by task against the first run",
        description="Each task's test main metric (entity F1, accuracy, Pearson, micro-F1) in every\n"
        "run, read from DIR/metrics.json, with the difference to the first run, and each later\n"
        "run's mean difference over the tasks it shares with the first.",
        epilog=COMPARE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument("runs", nargs="+", metavar="DIR",
                         help="run output directories (each holds metrics.json); the first is the reference")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")


def read_lines(source: TextIO) -> Iterator[str]:
    for line in source:
        yield line.rstrip("\n").rstrip("\r")


def run_predict(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.inference import Predictor, input_from_line, to_json_line

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
    for result in predictor.predict([input_from_line(line) for line in lines], tasks=tasks):
        out.write(to_json_line(result) + "\n")
    return 0


def run_tasks(out: TextIO) -> int:
    import mtl_nlp  # noqa: F401  (registers the built-in tasks)

    for name in list_tasks():
        spec = get_task(name)
        out.write(f"{name:<16} {spec.type:<22} {spec.description}\n")
    return 0


def run_compare(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.comparison import compare_runs, format_comparison

    comparison = compare_runs(args.runs)
    out.write((json.dumps(comparison, indent=2) if args.json else format_comparison(comparison)) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "predict":
            return run_predict(args, sys.stdout)
        if args.command == "compare":
            return run_compare(args, sys.stdout)
        return run_tasks(sys.stdout)
    except (OSError, ValueError, KeyError) as exc:
        print(f"mtl-nlp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
