"""Tables of a strategy benchmark: per task mean ± std over seeds, the gain over single-task
training with the same seeds, wall time and seconds per step."""

from __future__ import annotations

import statistics

from mtl_nlp.reports.plots import task_main_metric


def strategy_tables(
    results: dict[str, dict], arm_mixes: dict[str, str], mixes: dict[str, dict[str, str]]
) -> str:
    """Markdown tables, one per mix.

    `results` maps "ARM/seedN" to a run's {"metrics", "wall_seconds", "steps", "train_seconds"};
    `arm_mixes` maps each multi-task arm to its mix; `mixes[mix]` maps the single-task arm of each
    of the mix's tasks to the task's name in the metrics. The single-task row adds the runs' wall
    times; delta is the mean over tasks of (arm - single-task) with matching seeds, in points.
    """
    by_arm: dict[str, dict[int, dict]] = {}
    for key, value in results.items():
        name, seed = key.rsplit("/seed", 1)
        by_arm.setdefault(name, {})[int(seed)] = value
    lines = []
    for mix, singles in mixes.items():
        tasks = list(singles.values())
        single = {task: by_arm.get(arm, {}) for arm, task in singles.items()}
        header = " | ".join(tasks) + " | mean | delta vs single-task | wall s | s/step |"
        lines += [f"### mix `{mix}`", "", "| arm | seeds | " + header,
                  "|---" * (len(tasks) + 6) + "|"]
        rows = [("single-task", single, True)]
        rows += [(name, {t: by_arm[name] for t in tasks}, False)
                 for name, arm_mix in arm_mixes.items() if arm_mix == mix and name in by_arm]
        for label, runs, is_single in rows:
            lines.append(_row(label, runs, single, tasks, is_single))
        lines.append("")
    return "\n".join(lines)


def _scores(runs: dict[int, dict], task: str) -> dict[int, float]:
    return {seed: run["metrics"][task][task_main_metric(run["metrics"], task)]
            for seed, run in runs.items() if task in run["metrics"]}


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def _row(label: str, runs: dict, single: dict, tasks: list[str], is_single: bool) -> str:
    cells, means, deltas = [], [], []
    for task in tasks:
        scores = _scores(runs[task], task)
        cells.append(_mean_std(list(scores.values())))
        if scores:
            means.append(statistics.mean(scores.values()))
        reference = _scores(single[task], task)
        shared = sorted(set(scores) & set(reference))
        if shared and not is_single:
            deltas.append(statistics.mean(scores[s] - reference[s] for s in shared))
    seeds = sorted({seed for task in tasks for seed in runs[task]})
    if is_single:
        walls = [sum(runs[t][s]["wall_seconds"] for t in tasks if s in runs[t]) for s in seeds]
        per_step = "-"
    else:
        arm_runs = runs[tasks[0]]
        walls = [run["wall_seconds"] for run in arm_runs.values()]
        per_step = f"{statistics.mean(r['train_seconds'] / r['steps'] for r in arm_runs.values()):.3f}"
    mean = f"{statistics.mean(means):.4f}" if len(means) == len(tasks) else "-"
    delta = f"{statistics.mean(deltas) * 100:+.2f} pts" if deltas else "-"
    wall = f"{statistics.mean(walls):.0f}" if walls else "-"
    return f"| {label} | {len(seeds)} | " + " | ".join(cells) + f" | {mean} | {delta} | {wall} | {per_step} |"
