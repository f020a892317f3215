"""Which tasks to train together, from an inter-task affinity matrix (TAG: Fifty et al. 2021,
"Efficiently Identifying Task Groupings for Multi-Task Learning").

Pure functions over plain lists and the affinity.json dict, so they test on given matrices and
need no torch; `mtl_nlp.workflows.affinity` measures the matrix. (A module under mtl_nlp.training
would load torch with that package.)

The matrix is indexed [source][target]: Z(i->j) = 1 - L_j(after a step on task i) / L_j(before),
so a positive value means a step on i lowers j's loss.

Search: for each number of groups g, every partition of the tasks into exactly g non-empty groups
is scored as the sum over tasks t of the mean affinity t receives from its group mates (mean over
s in t's group, s != t, of Z(s->t)); a task alone receives 0. This is TAG's objective restricted to
partitions (TAG lets groups overlap), searched exhaustively: Bell(10) = 115975 partitions in all.

Ties (scores within TIE_TOLERANCE) go to the partition enumerated first. Partitions are enumerated
as restricted growth strings in lexicographic order: tasks in matrix order, each put into one of
the groups opened so far (in order of opening) before it opens a new one; so for tasks a, b, c in
two groups: [[a, b], [c]], then [[a, c], [b]], then [[a], [b, c]]. Groups list their tasks in
matrix order and come in order of their first task.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from mtl_nlp.config import ConfigError

MAX_TASKS = 10  # Bell(10) = 115975 partitions to score; Bell(11) would be 678570
# Scores this close count as equal: sums of the same affinities added in another order differ
# in their last bits, and such a difference must not decide a tie.
TIE_TOLERANCE = 1e-12


def lookahead_affinity(before: float, after: float) -> float:
    """Z = 1 - after / before: the fraction of a task's loss that another task's step removed
    (negative: the step raised it). 0 when the loss before is 0, where no step can lower it and
    the ratio is undefined."""
    if before == 0:
        return 0.0
    return 1.0 - after / before


def check_task_count(count: int) -> None:
    """ConfigError unless 2 <= count <= MAX_TASKS: affinity needs a pair of tasks, and the
    exhaustive partition search grows as the Bell numbers."""
    if count < 2:
        raise ConfigError(f"task affinity needs at least 2 tasks; the config has {count}")
    if count > MAX_TASKS:
        raise ConfigError(
            f"task grouping searches every partition of the tasks, so it takes at most {MAX_TASKS} "
            f"tasks; the config has {count}: probe at most {MAX_TASKS} of them with tasks=[...]"
        )


def set_partitions(count: int, groups: int) -> Iterator[list[list[int]]]:
    """Every partition of tasks 0..count-1 into exactly `groups` non-empty groups, in the
    canonical order described in the module docstring."""
    if not 1 <= groups <= count:
        raise ValueError(f"cannot split {count} tasks into {groups} non-empty groups")
    labels = [0] * count

    def extend(index: int, opened: int) -> Iterator[list[list[int]]]:
        if count - index < groups - opened:  # too few tasks left to open the missing groups
            return
        if index == count:
            yield [[task for task in range(count) if labels[task] == group] for group in range(groups)]
            return
        for label in range(min(opened + 1, groups)):
            labels[index] = label
            yield from extend(index + 1, max(opened, label + 1))

    yield from extend(1, 1)  # task 0 opens group 0


def partition_score(partition: list[list[int]], matrix: list[list[float]]) -> float:
    """Sum over tasks of the mean affinity each receives from its group mates (0 when alone)."""
    total = 0.0
    for group in partition:
        if len(group) < 2:
            continue
        for target in group:
            total += sum(matrix[source][target] for source in group if source != target) / (len(group) - 1)
    return total


def best_partition(matrix: list[list[float]], groups: int) -> tuple[list[list[int]], float]:
    """The highest-scoring partition into `groups` groups (task indices) and its score; ties go to
    the first in canonical order."""
    scored = [(partition_score(partition, matrix), partition)
              for partition in set_partitions(len(matrix), groups)]
    best = max(score for score, _ in scored)
    return next((partition, score) for score, partition in scored if score >= best - TIE_TOLERANCE)


def advice(groups: list[list[str]]) -> str:
    """"train together: a, b; alone: c": groups of two or more tasks, then the singletons."""
    parts = [f"train together: {', '.join(group)}" for group in groups if len(group) > 1]
    alone = [group[0] for group in groups if len(group) == 1]
    if alone:
        parts.append(f"alone: {', '.join(alone)}")
    return "; ".join(parts)


def task_groupings(tasks: list[str], matrix: list[list[float]]) -> list[dict[str, Any]]:
    """For g = 1..T groups: {"num_groups", "groups" (task names), "score", "advice"} of the best
    partition. `matrix[i][j]` is Z(tasks[i] -> tasks[j]); the diagonal is not used."""
    check_task_count(len(tasks))
    if len(matrix) != len(tasks) or any(len(row) != len(tasks) for row in matrix):
        raise ValueError(f"{len(tasks)} tasks need a {len(tasks)} x {len(tasks)} affinity matrix")
    broken = [f"{tasks[i]}->{tasks[j]}" for i, row in enumerate(matrix) for j, value in enumerate(row)
              if i != j and not math.isfinite(value)]
    if broken:
        raise ConfigError(f"affinity is not finite for {', '.join(broken)} (did the probe diverge? "
                          "try a lower train.lr)")
    result = []
    for count in range(1, len(tasks) + 1):
        partition, score = best_partition(matrix, count)
        named = [[tasks[index] for index in group] for group in partition]
        result.append({"num_groups": count, "groups": named, "score": score, "advice": advice(named)})
    return result


def recommend(groupings: list[dict[str, Any]]) -> dict[str, Any]:
    """The grouping with the highest score; ties go to fewer groups (one model serves more)."""
    best = max(entry["score"] for entry in groupings)
    ordered = sorted(groupings, key=lambda entry: entry["num_groups"])
    return next(entry for entry in ordered if entry["score"] >= best - TIE_TOLERANCE)


def named_matrix(tasks: list[str], matrix: list[list[float]]) -> dict[str, dict[str, float]]:
    """{source: {target: Z(source -> target)}}, as affinity.json stores it."""
    return {source: dict(zip(tasks, row)) for source, row in zip(tasks, matrix)}


def matrix_rows(tasks: list[str], named: dict[str, dict[str, float]]) -> list[list[float]]:
    """The [source][target] rows of a named matrix, in the order of `tasks`."""
    return [[named[source][target] for target in tasks] for source in tasks]


def off_diagonal(matrix: list[list[float]]) -> list[float]:
    """The affinities between different tasks: those the grouping uses."""
    return [value for i, row in enumerate(matrix) for j, value in enumerate(row) if i != j]


def every_steps(every: int) -> str:
    return "every step" if every == 1 else f"every {every} steps"


def value_format(values: list[float]) -> str:
    """A format for affinities: four decimals, or scientific when all `values` are below 0.01
    (short probes at a fine-tuning learning rate give values near 1e-4)."""
    finite = [abs(value) for value in values if math.isfinite(value)]
    return "{:+.4f}" if finite and max(finite) >= 0.01 else "{:+.2e}"


def format_affinity(result: dict[str, Any]) -> str:
    """The matrix, the best grouping for each number of groups and the recommendation, as text."""
    tasks = result["tasks"]
    rows = matrix_rows(tasks, result["matrix"])
    fmt = value_format(off_diagonal(rows))
    width = max(len(task) for task in tasks)
    cells = [[fmt.format(value) for value in row] for row in rows]
    cell = max(max(len(task) for task in tasks), *(len(text) for row in cells for text in row))
    lines = [
        f"inter-task affinity Z(row -> column) = 1 - loss of column after a step on row / before, mean of "
        f"{result['measurements']} measurements in {result['steps']} steps ({every_steps(result['every'])}); "
        "> 0: the step helps; the diagonal is not used for grouping",
        " " * width + "  " + "  ".join(task.rjust(cell) for task in tasks),
    ]
    lines += [task.ljust(width) + "  " + "  ".join(text.rjust(cell) for text in row)
              for task, row in zip(tasks, cells)]
    lines.append("best grouping per number of groups (score: affinity received from group mates, summed):")
    for entry in result["groupings"]:
        count = entry["num_groups"]
        label = f"{count} group{'s' if count != 1 else ''}:"
        lines.append(f"  {label:<10} score {fmt.format(entry['score'])}  {entry['advice']}")
    recommended = result["recommended"]
    count = recommended["num_groups"]
    lines.append(f"recommended ({count} group{'s' if count != 1 else ''}): {recommended['advice']}")
    cost = result.get("measurement_cost_in_steps")
    if cost is not None:
        measurement, step = result["seconds_per_measurement"], result["seconds_per_step"]
        lines.append(f"one measurement cost {cost:.1f} ordinary training steps ({measurement:.3f} s "
                     f"against {step:.3f} s)")
    return "\n".join(lines)
