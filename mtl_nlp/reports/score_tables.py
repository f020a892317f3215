"""A run's scores as a person reads them on the console: one labelled table (a row per task, its
main metric first), the overall score, and where the files are and what to run next."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtl_nlp.common.glue import GLUE_AVERAGE
from mtl_nlp.reports.run_results import OVERALL, main_metrics_of, task_entries


def format_scores(metrics: dict[str, Any], title: str) -> str:
    """`title`, then a markdown table of a metrics.json dict: task, main metric and its score, the
    task's other metrics; then the overall score (and the GLUE average when there is one)."""
    tasks = task_entries(metrics)
    mains = main_metrics_of(metrics)
    rows = [("task", "main metric", "score", "other metrics")]
    for task, values in tasks.items():
        main = mains[task]
        others = ", ".join(f"{name} {value:.4f}" for name, value in values.items() if name != main)
        rows.append((task, main, f"{values[main]:.4f}", others))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    rule = [f"{'-' * (width + 1)}:" if column == 2 else f":{'-' * (width + 1)}"
            for column, width in enumerate(widths)]
    lines = [title, _row(rows[0], widths), "|" + "|".join(rule) + "|"]
    lines += [_row(row, widths) for row in rows[1:]]
    overall = metrics.get(OVERALL) or {}
    if "score" in overall:
        summary = f"overall (mean main metric): {overall['score']:.4f}"
        if overall.get(GLUE_AVERAGE) is not None:
            summary += f"; GLUE average over {', '.join(overall['glue_tasks'])}: {overall[GLUE_AVERAGE]:.4f}"
        lines.append(summary)
    return "\n".join(lines)


def format_main_scores(metrics: dict[str, Any]) -> str:
    """Each task's main metric on one line: `task metric 0.1234, ...` (a validation entry)."""
    mains = main_metrics_of(metrics)
    return ", ".join(f"{task} {mains[task]} {values[mains[task]]:.4f}"
                     for task, values in task_entries(metrics).items())


def _row(cells: tuple[str, ...], widths: list[int]) -> str:
    aligned = [cell.rjust(width) if column == 2 else cell.ljust(width)
               for column, (cell, width) in enumerate(zip(cells, widths))]
    return "| " + " | ".join(aligned) + " |"


def format_next_steps(directory: str | Path, tasks: list[str]) -> str:
    """Where a trained checkpoint is and the commands that use it."""
    task = tasks[0] if tasks else "TASK"
    commands = [
        (f'echo "Some text." | mtl-nlp predict {directory}', "every task's answer"),
        (f"mtl-nlp evaluate {directory}", "score it again, e.g. on other data"),
        (f"mtl-nlp export {directory} --task {task} OUT", "one task as a transformers model"),
        (f"mtl-nlp serve {directory}", "an HTTP API"),
    ]
    width = max(len(command) for command, _ in commands)
    return "\n".join([
        f"checkpoint: {directory} (metrics.json: these scores; README.md: the model card; curves.png)",
        "next:", *(f"  {command:<{width}}  # {what}" for command, what in commands),
    ])
