"""`mtl-nlp`: train, fine-tune, evaluate, predict, export, push, list tasks, compare runs and measure
task affinity from the command line.

Every command's errors that a user can fix (a config key, a missing file, an unknown task) print
as one line on stderr and exit with 2; `--debug` shows their tracebacks. This module imports only
argparse until a command runs, so `mtl-nlp tasks` and `--help` answer without loading torch.
"""

from __future__ import annotations

import argparse
import sys

from mtl_nlp import __version__
from mtl_nlp.cli.examples import (
    AFFINITY_EXAMPLE,
    COMPARE_EXAMPLE,
    DISTILL_EXAMPLE,
    EVALUATE_EXAMPLE,
    EXPORT_EXAMPLE,
    EXPORT_ONNX_EXAMPLE,
    FINETUNE_EXAMPLE,
    PREDICT_EXAMPLE,
    PUSH_EXAMPLE,
    SERVE_EXAMPLE,
    TASKS_EXAMPLE,
    TRAIN_EXAMPLE,
)
from mtl_nlp.common.choices import AFFINITY_EVERY, BACKENDS, PRECISIONS
from mtl_nlp.common.errors import run_reporting_user_errors

RAW = argparse.RawDescriptionHelpFormatter
CHECKPOINT_HELP = "a checkpoint directory (a run's output_dir), or the Hub repository id it was pushed to"
# `--debug` and `--verbose` are accepted before and after the command name.
DEBUG = argparse.ArgumentParser(add_help=False)
DEBUG.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks of user errors too")
DEBUG.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show the progress bars and INFO lines of datasets, transformers and accelerate "
                   "(also MTL_NLP_VERBOSE=1)")

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtl-nlp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"mtl-nlp {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors too")
    parser.add_argument("--verbose", action="store_true", help="show the progress bars and INFO lines of "
                        "datasets, transformers and accelerate (also MTL_NLP_VERBOSE=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(commands)
    add_finetune_parser(commands)
    add_distill_parser(commands)
    add_evaluate_parser(commands)
    add_predict_parser(commands)
    add_export_parser(commands)
    add_export_onnx_parser(commands)
    add_push_parser(commands)
    commands.add_parser(
        "tasks", parents=[DEBUG], help="list the registered tasks", formatter_class=RAW, epilog=TASKS_EXAMPLE,
        description="Each registered task (built-in, or registered in Python) with its type, the "
        "source of its data and its labels when they are fixed in the entry.",
    )
    add_compare_parser(commands)
    add_affinity_parser(commands)
    add_serve_parser(commands)
    return parser


def add_config_arguments(command: argparse.ArgumentParser, config_help: str) -> None:
    command.add_argument("--config", metavar="FILE", help=config_help)
    command.add_argument("overrides", nargs="*", metavar="key=value",
                         help="config overrides applied last, e.g. train.lr=3e-5 sampling.strategy=uniform")


def add_overwrite_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument("--overwrite", action="store_true",
                         help="write into OUT even when it holds files (never into the checkpoint read)")


def add_train_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train", parents=[DEBUG], formatter_class=RAW,
        help="train one shared encoder on the configured tasks",
        description="Train a multi-task model from a YAML config and key=value overrides (the "
        "defaults train the embedded demo tasks).", epilog=TRAIN_EXAMPLE,
    )
    add_config_arguments(train, "YAML run config (see recipes/configs/ and the README's config keys)")


def add_finetune_parser(commands: argparse._SubParsersAction) -> None:
    finetune = commands.add_parser(
        "finetune", parents=[DEBUG], formatter_class=RAW,
        help="second stage: train each task alone from a multi-task checkpoint",
        description="MT-DNN's second stage: continue training each task of a multi-task checkpoint "
        "alone, one checkpoint per task.", epilog=FINETUNE_EXAMPLE,
    )
    finetune.add_argument("checkpoint", metavar="DIR", help="a finished multi-task run's output_dir")
    finetune.add_argument("--tasks", help="comma-separated subset of the checkpoint's tasks (default: all)")
    finetune.add_argument("--private-layers-only", action="store_true",
                          help="a run with private layers: keep the shared encoder frozen, train each task's "
                          "private layers and head, and assemble DIR/finetuned/one_pass/ (one shared pass)")
    finetune.add_argument("--adapters", action="store_true",
                          help="keep the multi-task encoder frozen, train a LoRA adapter and head per task "
                          "on it, and assemble DIR/finetuned/adapters/ (one encoder, an adapter per task; "
                          "needs peft)")
    finetune.add_argument("--compare-alone", action="store_true",
                          help="also train each task alone from the pretrained encoder (DIR/finetuned/alone/"
                          "<task>/) and recommend, per task, the better checkpoint on validation")
    finetune.add_argument("--overwrite", action="store_true",
                          help="replace an earlier second stage of the chosen tasks in DIR/finetuned/")
    finetune.add_argument("overrides", nargs="*", metavar="key=value",
                          help="config overrides on the run's saved config, e.g. train.epochs=2")


def add_distill_parser(commands: argparse._SubParsersAction) -> None:
    distill = commands.add_parser(
        "distill", parents=[DEBUG], formatter_class=RAW,
        help="train single-task teachers, then distill them into one multi-task model",
        description="Knowledge distillation with teacher annealing (BAM!): each task's teacher (named "
        "by distill.teachers.<task>, else trained alone into output_dir/teachers/<task>/) teaches the "
        "one multi-task model, which then answers every task from one encoder pass.",
        epilog=DISTILL_EXAMPLE,
    )
    add_config_arguments(distill, "YAML run config: the tasks, the student's and the teachers' settings")
    distill.add_argument("--overwrite", action="store_true",
                         help="replace a student already in output_dir (its teachers are kept and reused)")
    distill.add_argument("--retrain-teachers", action="store_true",
                         help="replace the teachers in output_dir/teachers/ trained with other settings or "
                         "data (teachers of the same settings and data are always reused)")
    distill.add_argument("--tasks", help="comma-separated tasks to teach (default: all); the others learn "
                         "from their gold labels alone, e.g. teach only the tasks the plain one model loses")


def add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate", parents=[DEBUG], help="score a checkpoint on its tasks' test splits", formatter_class=RAW,
        description="Score a checkpoint on the test split (validation where there is none) of "
        "each configured task and write the metrics as JSON. Without --config the run config "
        "saved in the checkpoint gives the tasks and data.", epilog=EVALUATE_EXAMPLE,
    )
    evaluate.add_argument("checkpoint", metavar="DIR", help="a checkpoint directory (a run's output_dir)")
    add_config_arguments(
        evaluate, "YAML run config naming the tasks to score (default: the checkpoint's own)"
    )
    evaluate.add_argument("--output", metavar="FILE",
                          help="where to write the metrics JSON (default: DIR/evaluation.json)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON, not as a table")


def add_predict_parser(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict", parents=[DEBUG],
        help="answer every task for each input line; one JSON line out per line in",
        formatter_class=RAW, epilog=PREDICT_EXAMPLE,
        description="Answer every task of a checkpoint (or --tasks) for each line of a text file or "
        "stdin, streaming: memory stays bounded for files of any length.",
    )
    predict.add_argument("checkpoint", metavar="DIR", help=CHECKPOINT_HELP)
    predict.add_argument(
        "input", nargs="?", default="-",
        help="text file, one input a line (default -: stdin); `text<TAB>text_pair` is a pair for "
        "sentence-pair tasks, a line without a TAB a single text for the other tasks, and (a model with "
        'multiple-choice or extractive QA tasks) a JSON line {"question": ..., "choices": [...]} or '
        '{"question": ..., "context": ...} a question',
    )
    predict.add_argument("--tasks", help="comma-separated subset of the checkpoint's tasks")
    predict.add_argument("--output", metavar="FILE", help="write the JSON lines here (default: stdout)")
    predict.add_argument("--batch-size", type=int, default=32, help="inputs per encoder pass (default 32)")
    predict.add_argument("--max-length", type=int,
                         help="tokens per input (default: the checkpoint's training max_length)")
    predict.add_argument("--stride", type=int,
                         help="tokens shared by the windows a tagging task reads a longer text in "
                         "(default: the checkpoint's, or max_length // 4)")
    predict.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    predict.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="autocast precision; auto = bf16 where the hardware runs it natively")
    predict.add_argument("--backend", choices=BACKENDS, default="torch",
                         help="the engine: torch; torch-compile (tens of seconds to compile on the first "
                         "batches, then faster: for large inputs); or ONNX Runtime with fp32 or int8 "
                         "weights (exported once into DIR/onnx/; needs the onnx extra)")


def add_export_onnx_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export-onnx", parents=[DEBUG], formatter_class=RAW, epilog=EXPORT_ONNX_EXAMPLE,
        help="write every task as one ONNX graph with a manifest, for ONNX Runtime servers",
        description="Write the all-tasks ONNX graph of a checkpoint (one encoder pass, every task's "
        "logits) as a standalone folder with its manifest and tokenizer. Needs the onnx extra.",
    )
    export.add_argument("checkpoint", metavar="DIR", help=CHECKPOINT_HELP)
    export.add_argument("output", metavar="OUT", help="folder to write")
    export.add_argument("--int8", action="store_true", help="dynamic int8 quantization of the weights")
    add_overwrite_argument(export)


def integer_at_least(low: int, high: int | None = None):
    """An argparse type: an integer >= `low` (and <= `high`), else an error naming the range."""
    valid = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def parse_integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {valid}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {valid}, got {value}")
        return value

    return parse_integer


def number_within(low: float, high: float, open_low: bool = False):
    """An argparse type: a finite number in [low, high] (or (low, high]), else an error naming it."""
    valid = f"a number in {'(' if open_low else '['}{low:g}, {high:g}]"

    def parse_number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {valid}, got {text!r}") from None
        if not (low < value if open_low else low <= value) or not value <= high:  # NaN fails both
            raise argparse.ArgumentTypeError(f"must be {valid}, got {text}")
        return value

    return parse_number


def add_serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", parents=[DEBUG], formatter_class=RAW, epilog=SERVE_EXAMPLE,
        help="serve a checkpoint over HTTP, every task from one encoder pass, with dynamic batching",
        description="Serve a checkpoint's tasks over HTTP (FastAPI on uvicorn) until SIGTERM or Ctrl-C, "
        "which stop accepting and answer every request already accepted.",
    )
    at_least_one = integer_at_least(1)
    serve.add_argument("checkpoint", metavar="DIR", help=CHECKPOINT_HELP)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=integer_at_least(0, 65535), default=8000)
    serve.add_argument("--backend", choices=BACKENDS, default="torch", help="the Predictor's engine")
    serve.add_argument("--precision", choices=PRECISIONS, default="auto")
    serve.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    serve.add_argument("--max-batch-tokens", type=at_least_one, default=8192,
                       help="a batch of merged requests closes at about this many tokens (default 8192)")
    serve.add_argument("--max-wait-ms", type=number_within(0, 10_000), default=0.0,
                       help="how long an idle model waits for more requests to join a batch; what "
                       "queued while the last batch ran joins at once (default 0, at most 10000)")
    serve.add_argument("--max-queue", type=at_least_one, default=512,
                       help="requests waiting for the model; more are answered 503 (default 512)")
    serve.add_argument("--max-inputs", type=at_least_one, default=256,
                       help="inputs per request (default 256)")
    serve.add_argument("--max-request-bytes", type=at_least_one, default=1 << 20,
                       help="bytes of a request body; more are answered 413 (default 1048576)")
    serve.add_argument("--max-request-windows", type=at_least_one, default=512,
                       help="encoder windows one request may cost: an input is one, a text a tagging task "
                       "reads in windows one per max_length - stride tokens; more are answered 413 "
                       "(default 512)")
    serve.add_argument("--timeout", type=number_within(0, 3600, open_low=True), default=30.0,
                       help="seconds before a request gets 504 (default 30, at most 3600)")
    serve.add_argument("--workers", type=at_least_one, default=1,
                       help="server processes, each with the model (one per core or GPU; default 1)")
    serve.add_argument("--api-key", help="require this key on every endpoint but the page, /health and "
                       "/ready (or set MTL_NLP_API_KEY, which keeps it out of the process list)")
    serve.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                       help="allow browser pages from this origin (repeatable; default: CORS off)")


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", parents=[DEBUG], formatter_class=RAW,
        help="write one task as a standard transformers model",
        description="Write task NAME of checkpoint DIR to OUT as a transformers model (config "
        "with id2label, weights, tokenizer, model card) that transformers.pipeline loads with no "
        "mtl_nlp installed. A checkpoint with adapters (sharing.adapters) writes the task's peft "
        "adapter folder, its head in modules_to_save, that PeftModel.from_pretrained loads on the "
        "base it names.", epilog=EXPORT_EXAMPLE,
    )
    export.add_argument("checkpoint", metavar="DIR", help=CHECKPOINT_HELP)
    export.add_argument("--task", required=True, metavar="NAME", help="the task to export")
    export.add_argument("output", metavar="OUT", help="the folder to write the export to")
    export.add_argument("--merge", action="store_true", help="adapters: write a plain transformers "
                        "model with the task's adapter merged into the base weights")
    add_overwrite_argument(export)


def add_push_parser(commands: argparse._SubParsersAction) -> None:
    push = commands.add_parser(
        "push", parents=[DEBUG], formatter_class=RAW,
        help="upload a checkpoint or an export to the Hugging Face Hub",
        description="Upload checkpoint (or task export) DIR to the Hub model repository REPO_ID, "
        "created when it does not exist.", epilog=PUSH_EXAMPLE,
    )
    push.add_argument("checkpoint", metavar="DIR", help="a run's output_dir, or a folder written by export")
    push.add_argument("repo_id", metavar="REPO_ID", help="the Hub repository, e.g. my-name/my-model")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--revision", metavar="BRANCH", help="the branch to commit to (default: main)")
    push.add_argument("--message", metavar="TEXT", help="the commit message")
    push.add_argument("--token", help="a Hub access token (default: the logged-in one, or HF_TOKEN)")


def add_compare_parser(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "compare", parents=[DEBUG], help="compare runs' test scores task by task against the first run",
        description="Each task's test main metric (entity F1, accuracy, Pearson, micro-F1) in every\n"
        "run, read from DIR/metrics.json, with the difference to the first run, and each later\n"
        "run's mean difference over the tasks it shares with the first.",
        epilog=COMPARE_EXAMPLE, formatter_class=RAW,
    )
    compare.add_argument("runs", nargs="+", metavar="DIR",
                         help="run output directories (each holds metrics.json); the first is the reference")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")


def add_affinity_parser(commands: argparse._SubParsersAction) -> None:
    affinity = commands.add_parser(
        "affinity", parents=[DEBUG], formatter_class=RAW,
        help="measure inter-task affinity in a short probe run and suggest task groups",
        description="Measure how a step on each task changes every task's loss (TAG's lookahead "
        "affinity) during a short multi-task run, and suggest which tasks to train together.",
        epilog=AFFINITY_EXAMPLE,
    )
    add_config_arguments(affinity, "YAML run config: the tasks, sampling, step mode and lr to probe with")
    affinity.add_argument("--steps", type=int, metavar="N",
                          help="optimizer steps of the probe (default: train.max_steps, else 200)")
    affinity.add_argument("--every", type=int, default=AFFINITY_EVERY, metavar="K",
                          help=f"measure every K steps (default {AFFINITY_EVERY}); one measurement costs "
                          "T backward and T x T forward passes for T tasks")


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parsed arguments; key=value overrides may also come after options (`DIR --output F k=v`),
    which argparse alone refuses once the positional list has been read."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from mtl_nlp.cli import commands

    handler = getattr(commands, f"run_{args.command.replace('-', '_')}")
    return run_reporting_user_errors(lambda: handler(args, sys.stdout), "mtl-nlp", args.debug)

