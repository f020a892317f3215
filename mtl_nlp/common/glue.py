"""The GLUE benchmark's scoring: each task's GLUE metric(s) and the GLUE average (Wang et al.
2019). One home for the built-in GLUE entries (their default main metric), the summary training
writes into metrics.json, and the reports that compare runs."""

from __future__ import annotations

# The GLUE benchmark's metric(s) for each task; a task with two contributes their mean, and the
# GLUE average is the mean over tasks.
GLUE_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("matthews_correlation",),
    "sst2": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "stsb": ("pearson", "spearman"),
    "qqp": ("accuracy", "f1"),
    "mnli": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
}
GLUE_AVERAGE = "glue_average"  # the key of the average in metrics.json's "overall" and in comparisons


def glue_average(metrics: dict[str, dict[str, float]]) -> dict[str, object] | None:
    """{"glue_average", "glue_tasks", "glue_scores"} over the tasks of `metrics` named as GLUE's
    (each task's GLUE score: its GLUE metric, or the mean of its two); None for fewer than two
    such tasks, where an average says nothing a task's own score does not."""
    scores = {}
    for task, names in GLUE_METRICS.items():
        values = metrics.get(task)
        if isinstance(values, dict) and all(name in values for name in names):
            scores[task] = sum(values[name] for name in names) / len(names)
    if len(scores) < 2:
        return None
    return {GLUE_AVERAGE: sum(scores.values()) / len(scores), "glue_tasks": list(scores),
            "glue_scores": scores}
