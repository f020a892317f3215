"""What a finished run wrote, read in one place: metrics.json (the test scores beside its best
checkpoint; its summary keys, the task entries it holds and each one's main metric) and
trainer_state.json (steps, the validation history, the best validation score).

A validation history entry of trainer_state.json has the same shape (task entries beside
"overall" and "main_metrics"), so the same functions read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtl_nlp.common.errors import MtlNlpError, no_checkpoint_at
from mtl_nlp.common.run_files import CHECKPOINT_CONFIG, METRICS_FILE, TRAINER_STATE
from mtl_nlp.common.task_types import MAIN_METRIC, REPORTED_METRICS

# Keys of metrics.json that are not tasks: the mean main metric (with the GLUE average), each
# task's main metric, the per-class reports, windowed examples and labels never seen in training.
OVERALL = "overall"
MAIN_METRICS = "main_metrics"
REPORTS = "reports"
WINDOWS = "windows"
UNSEEN_LABELS = "unseen_labels"
SUMMARY_KEYS = (OVERALL, MAIN_METRICS, REPORTS, WINDOWS, UNSEEN_LABELS)

# The key set each task type reports and its default main metric, the one model selection and
# the overall score use, for result files that do not record their main metrics.
METRIC_SETS: dict[frozenset[str], str] = {keys: MAIN_METRIC[task_type]
                                          for task_type, keys in REPORTED_METRICS.items()}


class MetricsFileError(MtlNlpError, ValueError):
    """A metrics.json that is not what a run writes: not JSON, not an object, or no task scores."""


def read_metrics(directory: str | Path) -> dict[str, Any]:
    """The metrics.json dict of the run in `directory`. FileNotFoundError when the directory or
    the file is missing (the run has not finished), MetricsFileError when it is not a JSON object."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(no_checkpoint_at(directory))
    path = directory / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} in {directory} (has the run finished?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetricsFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MetricsFileError(f"{path}: expected {{task: {{metric: value}}}}, found a {type(data).__name__}")
    return data


def read_trainer_state(directory: str | Path) -> dict[str, Any]:
    """The trainer_state.json dict of the run in `directory` (FileNotFoundError when missing)."""
    path = Path(directory) / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(f"no {TRAINER_STATE} in {directory} (has the run started?)")
    return json.loads(path.read_text(encoding="utf-8"))


def read_metrics_if_written(directory: str | Path) -> dict[str, Any]:
    """read_metrics, or {} for a checkpoint without metrics.json (one saved before its test run)."""
    try:
        return read_metrics(directory)
    except FileNotFoundError:
        return {}


def read_task_scores(directory: str | Path) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """(test metrics by task, {task: the main metric the run recorded}) of the run in `directory`,
    summary keys left out; a task whose main metric was not recorded has it inferred later.
    MetricsFileError for a task entry that does not map metric names to numbers."""
    data = read_metrics(directory)
    path = Path(directory) / METRICS_FILE
    tasks = {}
    for task, metrics in data.items():
        if task in SUMMARY_KEYS:
            continue
        numbers = isinstance(metrics, dict) and all(
            isinstance(value, (int, float)) and not isinstance(value, bool) for value in metrics.values()
        )
        if not numbers or not metrics:
            raise MetricsFileError(f"{path}: task {task!r} must map metric names to numbers")
        tasks[task] = metrics
    if not tasks:
        raise MetricsFileError(f"{path}: no task metrics")
    recorded = data.get(MAIN_METRICS) if isinstance(data.get(MAIN_METRICS), dict) else {}
    mains = {task: recorded[task] for task in tasks if recorded.get(task) in tasks[task]}
    return tasks, mains


def main_metric(metrics: dict[str, float]) -> str:
    """The main metric's key in one task's metrics dict: f1 (tagging), accuracy (classification),
    pearson (regression) or micro_f1 (multilabel). ValueError for an unknown key set."""
    keys = frozenset(metrics)
    matches = [main for known, main in METRIC_SETS.items() if known <= keys]
    # A superset still matches (a later version may add, say, an eval loss), as long as the
    # types it matches agree on the main metric (classification's set holds multiple choice's).
    if len(set(matches)) == 1:
        return matches[0]
    expected = "; ".join("{" + ", ".join(sorted(known)) + "}" for known in METRIC_SETS)
    raise ValueError(f"unknown metric set {{{', '.join(sorted(keys))}}}: expected one of {expected}")



def task_main_metric(result: dict[str, Any], task: str) -> str:
    """The main metric of `task` in a metrics.json dict or validation history entry: the one the
    run recorded under "main_metrics" (a task entry may choose it), else inferred from the keys."""
    recorded = result.get(MAIN_METRICS)
    if isinstance(recorded, dict) and recorded.get(task) in result[task]:
        return recorded[task]
    return main_metric(result[task])


def main_metrics_of(result: dict[str, Any]) -> dict[str, str]:
    """{task: main metric} for every task of a metrics.json dict or validation history entry."""
    return {task: task_main_metric(result, task) for task in task_entries(result)}


def task_entries(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The per-task metrics of a validation history entry or a metrics.json dict: its dict-valued
    keys, except the SUMMARY_KEYS."""
    return {
        key: value for key, value in result.items() if isinstance(value, dict) and key not in SUMMARY_KEYS
    }


def run_teachers(directory: str | Path) -> dict[str, str]:
    """{task: teacher checkpoint} of a distilled run (its saved distill.teachers); {} for a run
    trained without teachers or a folder without a checkpoint."""
    path = Path(directory) / CHECKPOINT_CONFIG
    if not path.is_file():
        return {}
    try:
        run_config = json.loads(path.read_text(encoding="utf-8")).get("run_config") or {}
    except (OSError, ValueError):
        return {}
    return dict((run_config.get("distill") or {}).get("teachers") or {})
