"""What each `mtl-nlp` command does once its arguments are parsed (see mtl_nlp.cli).

Each `run_NAME(args, out)` returns the exit code; heavy libraries are imported inside the
command that needs them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from mtl_nlp.common.console import setup_logging
from mtl_nlp.common.run_files import AFFINITY_FILE, AFFINITY_PLOT, EVALUATION_FILE
from mtl_nlp.registry import get_task, list_tasks

LISTED_LABELS = 6


def run_train(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.config import load_run_config
    from mtl_nlp.training.run import train_from_config

    config = load_run_config(args.config, args.overrides)
    setup_logging(args.verbose)
    train_from_config(config)
    return 0


def split_names(text: str | None) -> list[str] | None:
    """`--tasks "a, b"` as ["a", "b"] (spaces around names dropped); None when not given."""
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def run_finetune(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.workflows.finetune import finetune_tasks, format_finetune

    setup_logging(args.verbose)
    summary = finetune_tasks(args.checkpoint, split_names(args.tasks), args.overrides,
                             private_only=args.private_layers_only, compare_alone=args.compare_alone,
                             overwrite=args.overwrite, adapters=args.adapters)
    out.write(format_finetune(summary) + "\n")
    return 0


def run_distill(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.config import load_config
    from mtl_nlp.workflows.distill import distill_tasks, format_distill

    config = load_config(args.config, args.overrides)
    setup_logging(args.verbose)
    summary = distill_tasks(config, overwrite=args.overwrite, retrain_teachers=args.retrain_teachers,
                            taught=split_names(args.tasks))
    out.write(format_distill(summary) + "\n")
    return 0


def run_affinity(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.config import load_config
    from mtl_nlp.reports.task_groups import format_affinity
    from mtl_nlp.workflows.affinity import measure_affinity

    config = load_config(args.config, args.overrides)
    setup_logging(args.verbose)
    result = measure_affinity(config, steps=args.steps, every=args.every)
    out.write(format_affinity(result) + "\n")
    output = Path(config.output_dir)
    print(f"affinity written to {output / AFFINITY_FILE} and {output / AFFINITY_PLOT}", file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.config import load_config
    from mtl_nlp.modeling.model import read_checkpoint_config
    from mtl_nlp.reports.score_tables import format_scores
    from mtl_nlp.training.run import evaluate_checkpoint

    saved = read_checkpoint_config(args.checkpoint)
    if args.config is None and "run_config" not in saved:
        raise FileNotFoundError(f"{args.checkpoint} holds no run config: name the tasks with --config FILE")
    base = None if args.config else saved["run_config"]
    config = load_config(args.config, args.overrides, base=base,
                         base_source=f"{args.checkpoint}/mtl_nlp.json run_config")
    setup_logging(args.verbose)
    metrics = evaluate_checkpoint(args.checkpoint, config)
    from accelerate import PartialState

    if PartialState().is_main_process:  # under torchrun / accelerate launch every process scores
        target = Path(args.output) if args.output else Path(args.checkpoint) / EVALUATION_FILE
        target.write_text(json.dumps(metrics, indent=2) + "\n")
        if args.json:
            out.write(json.dumps(metrics, indent=2) + "\n")
        else:
            out.write(format_scores(metrics, f"scores of {args.checkpoint} on each task's test split "
                                             "(validation where there is none):") + "\n")
        print(f"metrics (with per-class reports) written to {target}", file=sys.stderr)
    return 0


def read_lines(source: TextIO) -> Iterator[str]:
    for line in source:
        yield line.rstrip("\n").rstrip("\r")


def run_predict(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.inference import Predictor, check_known_tasks, input_from_line, to_json_line
    from mtl_nlp.modeling.hub_checkpoint import resolve_checkpoint
    from mtl_nlp.modeling.model import read_checkpoint_config

    options = {"batch_size": args.batch_size, "device": args.device, "mixed_precision": args.precision,
               "backend": args.backend}
    if args.max_length is not None:
        options["max_length"] = args.max_length
    if args.stride is not None:
        options["stride"] = args.stride
    if args.input != "-" and not Path(args.input).is_file():
        raise FileNotFoundError(f"input file not found: {args.input}")
    tasks = split_names(args.tasks)
    checkpoint = resolve_checkpoint(args.checkpoint)
    saved_tasks = [head["name"] for head in read_checkpoint_config(checkpoint)["tasks"]]
    check_known_tasks(tasks, saved_tasks)  # before the weights load
    setup_logging(args.verbose)
    predictor = Predictor.from_pretrained(checkpoint, **options)
    pairs = any(task in predictor.pair_tasks for task in tasks or predictor.tasks)
    configs = predictor.model.head_configs
    questions = any(configs[task].type in ("multiple_choice", "extractive_qa")
                    for task in tasks or predictor.tasks)
    source = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115
    target = open(args.output, "w", encoding="utf-8") if args.output else out  # noqa: SIM115
    # A person typing at a terminal gets each answer at once; files and pipes go in chunks of
    # 8 batches, length-sorted for little padding.
    chunk = 1 if source.isatty() else None
    try:
        inputs = (input_from_line(line, pairs, questions) for line in read_lines(source))
        for result in predictor.predict_stream(inputs, tasks=tasks, chunk_size=chunk):
            target.write(to_json_line(result) + "\n")
            target.flush()
    finally:
        if source is not sys.stdin:
            source.close()
        if target is not out:
            target.close()
    return 0


def run_export(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.publish.export import export_task

    setup_logging(args.verbose)
    written = export_task(args.checkpoint, args.task, args.output, overwrite=args.overwrite,
                          merge=args.merge)
    out.write(f"exported task {args.task!r} to {written}\n")
    return 0


def run_export_onnx(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.common.output_folders import check_output_folder
    from mtl_nlp.inference.onnx_engine import export_onnx_artifact
    from mtl_nlp.modeling.hub_checkpoint import resolve_checkpoint

    setup_logging(args.verbose)
    checkpoint = resolve_checkpoint(args.checkpoint)
    check_output_folder(args.output, args.overwrite, source=checkpoint)
    written = export_onnx_artifact(checkpoint, args.output, int8=args.int8)
    out.write(f"wrote every task's ONNX graph to {written / 'model.onnx'}, "
              "with manifest.json and the tokenizer\n")
    return 0


def run_push(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.publish.hub import push_to_hub

    url = push_to_hub(args.checkpoint, args.repo_id, private=args.private or None, revision=args.revision,
                      token=args.token, commit_message=args.message)
    out.write(f"pushed {args.checkpoint} to {args.repo_id}: {url}\n")
    return 0


def run_tasks(args: argparse.Namespace, out: TextIO) -> int:
    rows = [("name", "type", "data", "labels")]
    for name in list_tasks():
        spec = get_task(name)
        labels = list(spec.labels or [])
        shown = ", ".join(labels[:LISTED_LABELS])
        if len(labels) > LISTED_LABELS:
            shown += f", ... ({len(labels)})"
        shown = {"regression": "(a number)", "multiple_choice": "(one of each question's options)",
                 "extractive_qa": "(a span of each question's context)"}.get(spec.type, shown)
        rows.append((name, spec.type, spec.source, shown or "(from the data)"))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + f"  {row[3]}\n")
    return 0


def run_compare(args: argparse.Namespace, out: TextIO) -> int:
    from mtl_nlp.reports.comparison import compare_runs, format_comparison

    comparison = compare_runs(args.runs)
    out.write((json.dumps(comparison, indent=2) if args.json else format_comparison(comparison)) + "\n")
    return 0


def run_serve(args: argparse.Namespace, out: TextIO) -> int:
    import os

    from mtl_nlp.serving.app import ServeSettings
    from mtl_nlp.serving.launch import API_KEY_VARIABLE, serve

    setup_logging(args.verbose)
    settings = ServeSettings(
        max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        max_inputs=args.max_inputs, max_request_bytes=args.max_request_bytes,
        max_request_windows=args.max_request_windows, timeout_s=args.timeout,
        api_key=args.api_key or os.environ.get(API_KEY_VARIABLE),
        cors_origins=tuple(args.cors_origin or ()),
    )
    options = {"backend": args.backend, "mixed_precision": args.precision, "device": args.device}
    serve(args.checkpoint, args.host, args.port, args.workers, options, settings)
    return 0
