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

Noise: the measurements are split into NOISE_WINDOWS consecutive windows; the spread of the
windows' mean matrices gives the standard error of each mean affinity, and of the score lead of
one grouping over another (the same lead computed in each window). Consecutive measurements along
one trajectory are correlated, so windows, not single measurements, are the samples; a drift of
the affinities during the probe counts as noise too. The best grouping is recommended only when it
leads both plain choices, one model of all tasks and every task alone (those of the two it is
not), by more than NOISE_FACTOR standard errors; otherwise the recommendation says that no
grouping is supported by the data and keeps one model of all tasks, the default.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from typing import Any

from mtl_nlp.config import ConfigError

MAX_TASKS = 10  # Bell(10) = 115975 partitions to score; Bell(11) would be 678570
# Scores this close count as equal: sums of the same affinities added in another order differ
# in their last bits, and such a difference must not decide a tie.
TIE_TOLERANCE = 1e-12
# Consecutive windows the measurements are split into to estimate the noise: enough samples for a
# spread, few enough that each window averages over several steps.
NOISE_WINDOWS = 5
# A lead counts as supported beyond this many standard errors (about 95% one-sided for a normal
# estimate; with 5 windows the estimate of the spread is itself rough, so this is a floor).
NOISE_FACTOR = 2.0


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


def best_grouping(groupings: list[dict[str, Any]]) -> dict[str, Any]:
    """The grouping with the highest score; ties go to fewer groups (one model serves more)."""
    best = max(entry["score"] for entry in groupings)
    ordered = sorted(groupings, key=lambda entry: entry["num_groups"])
    return next(entry for entry in ordered if entry["score"] >= best - TIE_TOLERANCE)


def window_means(matrices: list[list[list[float]]], windows: int = NOISE_WINDOWS) -> list[list[list[float]]]:
    """The mean matrix of each of min(`windows`, len(matrices)) consecutive runs of the
    measurements, of sizes differing by at most one (the longer ones first)."""
    if not matrices:
        raise ValueError("no measurements to split into windows")
    count = min(windows, len(matrices))
    size, longer = divmod(len(matrices), count)
    means, start = [], 0
    for index in range(count):
        stop = start + size + (1 if index < longer else 0)
        chunk = matrices[start:stop]
        means.append([[sum(values) / len(chunk) for values in zip(*rows)] for rows in zip(*chunk)])
        start = stop
    return means


def standard_error(values: list[float]) -> float:
    """Standard error of the mean of `values` (sample standard deviation / sqrt(n), n >= 2)."""
    return statistics.stdev(values) / math.sqrt(len(values))


def noise_estimate(tasks: list[str], windows: list[list[list[float]]]) -> dict[str, Any] | None:
    """affinity.json's "noise": the standard error of each mean affinity from the spread of the
    window means, and its median over the pairs of different tasks ("level"); None from a single
    window, which has no spread."""
    if len(windows) < 2:
        return None
    errors = [[standard_error([window[i][j] for window in windows]) for j in range(len(tasks))]
              for i in range(len(tasks))]
    return {"windows": len(windows), "factor": NOISE_FACTOR, "standard_error": named_matrix(tasks, errors),
            "level": statistics.median(off_diagonal(errors))}


def score_lead(tasks: list[str], entry: dict[str, Any], reference: dict[str, Any],
               windows: list[list[list[float]]]) -> dict[str, Any]:
    """How far grouping `entry` leads `reference` in score (from the mean matrix), with the
    standard error of that lead from the windows (None from a single window)."""
    index = {task: position for position, task in enumerate(tasks)}

    def partition(groups: list[list[str]]) -> list[list[int]]:
        return [[index[task] for task in group] for group in groups]

    mine, theirs = partition(entry["groups"]), partition(reference["groups"])
    leads = [partition_score(mine, window) - partition_score(theirs, window) for window in windows]
    error = standard_error(leads) if len(leads) > 1 else None
    over = "one model of all tasks" if reference["num_groups"] == 1 else "every task alone"
    return {"over": over, "lead": entry["score"] - reference["score"], "standard_error": error}


def is_supported(lead: dict[str, Any]) -> bool:
    """Whether a lead stands out of the noise: above NOISE_FACTOR standard errors (and above 0)."""
    error = lead["standard_error"]
    return error is not None and lead["lead"] > max(NOISE_FACTOR * error, TIE_TOLERANCE)


def recommend(tasks: list[str], groupings: list[dict[str, Any]],
              windows: list[list[list[float]]]) -> dict[str, Any]:
    """The best grouping with "supported": True and its "leads" over one model of all tasks and
    every task alone, when both leads stand out of the noise of the `windows`' mean matrices;
    otherwise one model of all tasks with "supported": False, an advice saying that no grouping
    is supported by the data, and the unsupported grouping under "best"."""
    best = best_grouping(groupings)
    # The two groupings that need no affinity to choose, those a recommendation must beat.
    references = [entry for entry in (groupings[0], groupings[-1])
                  if entry["num_groups"] != best["num_groups"]]
    leads = [score_lead(tasks, best, reference, windows) for reference in references]
    if all(is_supported(lead) for lead in leads):
        return {**best, "supported": True, "leads": leads}
    together = groupings[0]
    return {"num_groups": 1, "groups": together["groups"], "score": together["score"],
            "advice": unsupported_advice(best, leads), "supported": False,
            "best": {key: best[key] for key in ("num_groups", "groups", "score", "advice")}, "leads": leads}


def unsupported_advice(best: dict[str, Any], leads: list[dict[str, Any]]) -> str:
    """The plain statement that the probe cannot tell which tasks to group, and why."""
    failed = next(lead for lead in leads if not is_supported(lead))
    if failed["standard_error"] is None:
        why = "one measurement gives no estimate of its noise"
    else:
        why = (f"the best grouping ({best['advice']}) leads {failed['over']} by {lead_text(failed)}, "
               f"within {NOISE_FACTOR:g} standard errors of the probe's noise")
    return (f"no grouping is supported by the data: {why}; keep one model of all tasks (the default), "
            "or probe longer")


def lead_text(lead: dict[str, Any]) -> str:
    """"+1.20e-04 ± 9.00e-05 (standard error)"."""
    error = lead["standard_error"]
    fmt = value_format([lead["lead"], error or 0.0])
    if error is None:
        return fmt.format(lead["lead"])
    return f"{fmt.format(lead['lead'])} ± {fmt.format(error).lstrip('+')} (standard error)"


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
    """The matrix, its noise, the best grouping for each number of groups and the recommendation,
    as text."""
    tasks = result["tasks"]
    rows = matrix_rows(tasks, result["matrix"])
    fmt = value_format(off_diagonal(rows))
    lines = [
        f"inter-task affinity Z(row -> column) = 1 - loss of column after a step on row / before, mean of "
        f"{result['measurements']} measurements in {result['steps']} steps ({every_steps(result['every'])}); "
        "> 0: the step helps; the diagonal is not used for grouping",
        *matrix_lines(tasks, rows, fmt),
        *noise_lines(tasks, result, fmt),
        "best grouping per number of groups (score: affinity received from group mates, summed):",
    ]
    for entry in result["groupings"]:
        count = entry["num_groups"]
        label = f"{count} group{'s' if count != 1 else ''}:"
        lines.append(f"  {label:<10} score {fmt.format(entry['score'])}  {entry['advice']}")
    lines += recommendation_lines(result["recommended"])
    cost = result.get("measurement_cost_in_steps")
    if cost is not None:
        measurement, step = result["seconds_per_measurement"], result["seconds_per_step"]
        lines.append(f"one measurement cost {cost:.1f} ordinary training steps ({measurement:.3f} s "
                     f"against {step:.3f} s)")
    return "\n".join(lines)


def matrix_lines(tasks: list[str], rows: list[list[float]], fmt: str) -> list[str]:
    """A task x task matrix as aligned text: a header of task names, then one row per task."""
    width = max(len(task) for task in tasks)
    cells = [[fmt.format(value) for value in row] for row in rows]
    cell = max(max(len(task) for task in tasks), *(len(text) for row in cells for text in row))
    header = " " * width + "  " + "  ".join(task.rjust(cell) for task in tasks)
    return [header] + [task.ljust(width) + "  " + "  ".join(text.rjust(cell) for text in row)
                       for task, row in zip(tasks, cells)]


def noise_lines(tasks: list[str], result: dict[str, Any], fmt: str) -> list[str]:
    """The standard error of each affinity, or why there is none (affinity.json files written
    before the probe measured its noise have no "noise" at all, and print nothing)."""
    if "noise" not in result:
        return []
    noise = result["noise"]
    if noise is None:
        return ["noise: not estimated (one measurement has no spread); no grouping can be supported"]
    unsigned = fmt.replace("+", "")
    return [f"noise: standard error of each mean affinity, from the spread of {noise['windows']} consecutive "
            f"windows of the measurements (median between tasks {unsigned.format(noise['level'])}):",
            *matrix_lines(tasks, matrix_rows(tasks, noise["standard_error"]), unsigned)]


def recommendation_lines(recommended: dict[str, Any]) -> list[str]:
    """The recommended grouping and the leads it rests on, or that no grouping is supported."""
    if recommended.get("supported") is False:
        return [f"recommended: {recommended['advice']}"]
    count = recommended["num_groups"]
    lines = [f"recommended ({count} group{'s' if count != 1 else ''}): {recommended['advice']}"]
    leads = recommended.get("leads")
    if leads:
        beaten = " and ".join(f"{lead['over']} by {lead_text(lead)}" for lead in leads)
        lines.append(f"  supported: it leads {beaten}, beyond {NOISE_FACTOR:g} standard errors")
    return lines
