"""Comparing finished runs task by task: each task's test main metric in every run's
metrics.json, the difference to the first run, and each run's mean difference over shared tasks
(`mtl-nlp compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtl_nlp.common.errors import MtlNlpError
from mtl_nlp.common.glue import GLUE_AVERAGE, glue_average
from mtl_nlp.reports.run_results import MAIN_METRICS, read_task_scores, run_teachers, task_main_metric


class ComparisonError(MtlNlpError, ValueError):
    """Run folders that cannot be compared: missing or malformed metrics, mismatched metrics."""


def load_metrics(directory: str | Path) -> dict[str, dict[str, float]]:
    """A run's test metrics by task from DIR/metrics.json, the summary keys left out.
    FileNotFoundError when the file is missing, ValueError when it is malformed."""
    return read_task_scores(directory)[0]


def compare_runs(directories: list[str | Path]) -> dict[str, Any]:
    """Each task's test main metric in every run and its difference to the first run (the
    reference), plus each later run's mean difference over the tasks it shares with the first.

    Returns {"runs": [dir, ...], "tasks": [{"task", "metric", "scores", "differences"}, ...],
    "summary": [{"run", "mean_difference", "shared_tasks"}, ...]}; "scores" and "differences"
    hold one value per run (None where the run lacks the task; a difference is run - first);
    "glue_average" holds each run's GLUE average (None for a run of fewer than two GLUE tasks);
    "teachers" each run's {task: teacher checkpoint} ({} for a run trained without teachers)."""
    if len(directories) < 2:
        raise ComparisonError(f"compare needs at least 2 run directories, got {len(directories)}")
    runs = [str(directory) for directory in directories]
    loaded = [read_task_scores(directory) for directory in directories]
    results = [{**tasks, MAIN_METRICS: mains} for tasks, mains in loaded]
    order: dict[str, None] = {}  # the first run's tasks first, then the others as they appear
    for tasks, _ in loaded:
        order.update(dict.fromkeys(tasks))
    rows = [_compare_task(task, runs, results) for task in order]
    summary = []
    for index, run in enumerate(runs[1:], start=1):
        shared = [row["differences"][index] for row in rows if row["differences"][index] is not None]
        mean = _clean(sum(shared) / len(shared)) if shared else None
        summary.append({"run": run, "mean_difference": mean, "shared_tasks": len(shared)})
    glue = [(glue_average(tasks) or {}).get(GLUE_AVERAGE) for tasks, _ in loaded]
    teachers = [run_teachers(directory) for directory in directories]
    return {"runs": runs, "tasks": rows, "summary": summary, GLUE_AVERAGE: glue, "teachers": teachers}


def _compare_task(task: str, runs: list[str], results: list[dict]) -> dict[str, Any]:
    metric = None
    scores: list[float | None] = []
    for run, result in zip(runs, results):
        if task not in result:
            scores.append(None)
            continue
        try:
            name = task_main_metric(result, task)
        except ValueError as exc:
            raise ComparisonError(f"{run}: task {task!r}: {exc}") from None
        if metric is not None and name != metric:  # the same name for two different tasks
            raise ComparisonError(f"task {task!r} is scored by {metric} in one run but by {name} in {run}")
        metric = name
        scores.append(float(result[task][name]))
    first = scores[0]
    differences = [None] + [
        _clean(score - first) if score is not None and first is not None else None for score in scores[1:]
    ]
    return {"task": task, "metric": metric, "scores": scores, "differences": differences}


def _clean(value: float) -> float:
    """Drop the float noise of a subtraction (0.8889 - 0.9012 = -0.012300000000000089) and -0.0."""
    return round(value, 10) + 0.0


def format_comparison(comparison: dict[str, Any]) -> str:
    """compare_runs' result as an aligned markdown table: a row per task, a column per run, the
    difference to the first run in brackets, `-` where a run lacks the task, and a last row with
    each later run's mean difference over the tasks it shares with the first."""
    runs = comparison["runs"]
    header = ["task", "metric", *runs]
    body = []
    for row in comparison["tasks"]:
        cells = [row["task"], row["metric"]]
        for score, difference in zip(row["scores"], row["differences"]):
            cell = "-" if score is None else f"{score:.4f}"
            if difference is not None:
                cell += f" ({difference:+.4f})"
            cells.append(cell)
        body.append(cells)
    means = []
    for entry in comparison["summary"]:
        count = entry["shared_tasks"]
        tasks = f"{count} task{'s' if count != 1 else ''}"
        mean = entry["mean_difference"]
        means.append(f"- ({tasks} shared)" if mean is None else f"{mean:+.4f} over {tasks}")
    body.append(["mean difference", "", "", *means])
    glue = comparison.get(GLUE_AVERAGE) or []
    if any(value is not None for value in glue):  # runs of two or more GLUE tasks
        body.append(["GLUE average", "GLUE's", *("-" if value is None else f"{value:.4f}" for value in glue)])
    widths = [max(len(cells[column]) for cells in [header, *body]) for column in range(len(header))]
    right = [False, False] + [True] * len(runs)  # scores right-aligned, so their digits line up

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "| " + " | ".join(padded) + " |"

    marks = ["-" * (w + 1) + ":" if r else ":" + "-" * (w + 1) for w, r in zip(widths, right)]
    rule = "|" + "|".join(marks) + "|"
    caption = f"test main metric per task; in brackets: the difference to the first run (run - {runs[0]})"
    table = [caption, line(header), rule, *(line(cells) for cells in body)]
    for run, teachers in zip(runs, comparison.get("teachers") or []):
        if teachers:  # a distilled run: where its soft targets came from
            taught = ", ".join(f"{task} from {teacher}" for task, teacher in teachers.items())
            table.append(f"{run} was distilled: {taught}")
    return "\n".join(table)


