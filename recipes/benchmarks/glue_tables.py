"""The GLUE benchmark's table, shaped like MT-DNN's: each task's GLUE score as mean ± std over
seeds, the GLUE average, wall time and the encoder passes serving takes, for tuned single-task
training, the one multi-task model, multi-task + finetune and the affinity grouping.

Single-task runs are tuned fairly: each task takes the learning rate whose runs score best on
validation (mean over the seeds that ran at every learning rate, so a sweep on one seed followed by
more seeds at the chosen rate selects on the sweep alone), and reports that learning rate's test
scores over all its seeds.
"""

from __future__ import annotations

import statistics
from typing import Any

from mtl_nlp.common.glue import GLUE_METRICS


def glue_score(task: str, metrics: dict[str, float]) -> float:
    """A task's GLUE score: its GLUE metric, or the mean of its two (MRPC, STS-B)."""
    names = GLUE_METRICS[task]
    return sum(metrics[name] for name in names) / len(names)


def best_learning_rate(by_lr: dict[float, list[dict[str, Any]]]) -> float:
    """The learning rate with the best mean validation score over the seeds every rate ran
    (all seeds when none ran at every rate); ties go to the smaller rate."""
    seed_sets = [{run["seed"] for run in runs} for runs in by_lr.values()]
    swept = set.intersection(*seed_sets) or set.union(*seed_sets)

    def mean_validation(lr: float) -> float:
        scored = [run["validation"] for run in by_lr[lr] if run["seed"] in swept]
        return statistics.mean(scored) if scored else float("-inf")

    return max(by_lr, key=lambda lr: (mean_validation(lr), -lr))


def tuned_single_task(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{task: {"lr", "scores": {seed: GLUE score}, "wall": {seed: seconds}}} for the learning rate
    `best_learning_rate` picks for each task. `runs` hold "task", "lr", "seed", "validation" (the
    selected checkpoint's validation score), "metrics" and "wall_seconds"."""
    by_task: dict[str, dict[float, list[dict]]] = {}
    for run in runs:
        by_task.setdefault(run["task"], {}).setdefault(run["lr"], []).append(run)
    tuned = {}
    for task, by_lr in by_task.items():
        lr = best_learning_rate(by_lr)
        chosen = by_lr[lr]
        tuned[task] = {"lr": lr, "scores": {r["seed"]: glue_score(task, r["metrics"][task]) for r in chosen},
                       "wall": {r["seed"]: r["wall_seconds"] for r in chosen},
                       "validation": {r["seed"]: r["validation"] for r in chosen}}
    return tuned


def chosen_on_validation(finetuned: dict[str, dict[str, Any]],
                         alone: dict[str, dict[str, Any]]) -> dict[str, dict[int, float]]:
    """{task: {seed: GLUE score}} of what `mtl-nlp finetune --compare-alone` recommends: per task
    and seed, the second stage's run unless the single-task run scored higher on validation."""
    scores: dict[str, dict[int, float]] = {}
    for task in finetuned.keys() & alone.keys():
        tuned, single = finetuned[task], alone[task]
        scores[task] = {seed: (single if single["validation"][seed] > tuned["validation"][seed] else tuned)
                        ["scores"][seed] for seed in tuned["scores"].keys() & single["scores"].keys()}
    return scores


def model_scores(runs: list[dict[str, Any]], tasks: list[str]) -> dict[str, dict[int, float]]:
    """{task: {seed: GLUE score}} of multi-task runs ("seed", "metrics": {task: metrics}); a
    grouping arm's runs each cover some of the tasks."""
    scores: dict[str, dict[int, float]] = {task: {} for task in tasks}
    for run in runs:
        for task in tasks:
            if task in run["metrics"]:
                scores[task][run["seed"]] = glue_score(task, run["metrics"][task])
    return scores


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * spread:.1f}"


def glue_row(label: str, scores: dict[str, dict[int, float]], tasks: list[str], wall: float | None,
             passes: int | str) -> str:
    """One markdown row: scores in points (mean ± std), the GLUE average of the per-seed
    averages over seeds with every task, mean wall seconds, encoder passes per text."""
    seeds = sorted(set.intersection(*(set(scores.get(task, {})) for task in tasks))) if tasks else []
    averages = [statistics.mean(scores[task][seed] for task in tasks) for seed in seeds]
    cells = [_cell(list(scores.get(task, {}).values())) for task in tasks]  # "-": not run yet
    shown_wall = "-" if wall is None else f"{wall:.0f}"
    return f"| {label} | " + " | ".join(cells) + f" | {_cell(averages)} | {shown_wall} | {passes} |"


def glue_table(rows: list[tuple[str, dict[str, dict[int, float]], float | None, int | str]],
               tasks: list[str]) -> str:
    """The whole table: `rows` of (label, {task: {seed: score}}, wall seconds, encoder passes)."""
    header = "| | " + " | ".join(tasks) + " | GLUE avg | wall s | encoder passes |"
    rule = "|---" * (len(tasks) + 4) + "|"
    return "\n".join([header, rule, *(glue_row(label, scores, tasks, wall, passes)
                                        for label, scores, wall, passes in rows)])


DISTILL_ROWS = {  # recipes/glue_benchmark.py's DISTILL_ARMS
    "multi_decay": "multi-task, layer-wise lr decay 0.9",
    "multi_mix": "multi-task, layer mix",
    "distill": "distilled from the single-task runs",
    "distill_decay": "distilled, layer-wise lr decay 0.9",
    "distill_t2": "distilled, teacher temperature 2",
    "distill_mix_even_init": "distilled, layer mix started even (before the top-layer start)",
    "distill_mix": "distilled, layer mix",
    "distill_mix_decay": "distilled, layer mix and lr decay 0.9",
}


ROUTE_ROWS = {  # adapter arms and second stages: (label, encoder passes; None: one per task)
    "lora": ("per-task LoRA, frozen encoder", None),
    "lora_base": ("per-task LoRA, encoder trained", None),
    "lora_base_top2": ("per-task LoRA in the top 2 layers, encoder trained", "1 shared + 2 layers per task"),
    "lora_heads_5e-4": ("per-task LoRA, frozen encoder, heads at the adapters' 5e-4", None),
    "lora_2e-3": ("per-task LoRA, frozen encoder, adapters and heads at 2e-3", None),
    "finetune_adapters": ("multi-task + adapter second stage (one encoder)", None),
    "finetune_distilled": ("distilled (lr decay 0.9) + finetune", None),
}


def glue_summary(results: dict[str, dict[str, Any]], tasks: list[str]) -> str:
    """The table of every arm with results, keyed as recipes/glue_benchmark.py keys them:
    "single/<task>/lr<lr>/seed<n>", "multi/seed<n>", "private/seed<n>", "finetune/seed<n>",
    "finetune_lr/<task>/lr<lr>/seed<n>", "groups/seed<n>"; the multi-task + finetune rows' wall
    time is the two stages' together."""
    def arm(prefix: str) -> list[dict[str, Any]]:
        return [run for key, run in results.items() if key.startswith(prefix)]

    def mean_wall(prefix: str) -> float | None:
        walls = [run["wall_seconds"] for run in arm(prefix)]
        return sum(walls) / len(walls) if walls else None

    def tuned_wall(tuned: dict[str, dict[str, Any]]) -> float | None:
        seeds = sorted(set.intersection(*(set(info["wall"]) for info in tuned.values())))
        walls = [sum(info["wall"][seed] for info in tuned.values()) for seed in seeds]
        return sum(walls) / len(walls) if walls else None

    tuned = tuned_single_task(arm("single/"))
    rows = []
    if tuned:
        rows.append(("single-task (lr tuned on validation)", {t: info["scores"] for t, info in tuned.items()},
                     tuned_wall(tuned), len(tuned)))
    if arm("multi/"):
        rows.append(("multi-task (one model)", model_scores(arm("multi/"), tasks), mean_wall("multi/"), 1))
    if arm("private/"):
        depth = arm("private/")[0]["private_layers"]
        # one pass through the shared layers, then each task's own top layers
        rows.append((f"multi-task, {depth} private top layers per task", model_scores(arm("private/"), tasks),
                     mean_wall("private/"), f"1 shared + {depth} layers per task"))
    if arm("finetune/"):
        total = (mean_wall("multi/") or 0.0) + (mean_wall("finetune/") or 0.0)
        rows.append(("multi-task + finetune", model_scores(arm("finetune/"), tasks), total, len(tasks)))
    tuned_finetune = tuned_single_task(arm("finetune_lr/"))
    if tuned_finetune:
        total = (mean_wall("multi/") or 0.0) + (tuned_wall(tuned_finetune) or 0.0)
        rows.append(("multi-task + finetune (lr tuned on validation)",
                     {t: info["scores"] for t, info in tuned_finetune.items()}, total, len(tuned_finetune)))
    if tuned and tuned_finetune:
        stages = (mean_wall("multi/"), tuned_wall(tuned_finetune), tuned_wall(tuned))  # all three ran
        total = sum(wall or 0.0 for wall in stages)
        rows.append(("multi-task + finetune, or single-task where it validates better",
                     chosen_on_validation(tuned_finetune, tuned), total, len(tuned_finetune)))
    if arm("groups/"):
        count = len(arm("groups/")[0]["groups"])
        rows.append((f"affinity grouping ({count} models)", model_scores(arm("groups/"), tasks),
                     mean_wall("groups/"), count))
    for prefix, label in DISTILL_ROWS.items():
        if arm(f"{prefix}/"):
            rows.append((label, model_scores(arm(f"{prefix}/"), tasks), mean_wall(f"{prefix}/"), 1))
    for prefix, (label, passes) in ROUTE_ROWS.items():
        if arm(f"{prefix}/"):
            wall = mean_wall(f"{prefix}/")
            first = {"finetune_adapters": "multi/", "finetune_distilled": "distill_decay/"}.get(prefix)
            if first:  # the two stages together
                wall = (mean_wall(first) or 0.0) + (wall or 0.0)
            rows.append((label, model_scores(arm(f"{prefix}/"), tasks), wall,
                         len(tasks) if passes is None else passes))
    shown = [task for task in tasks if any(scores.get(task) for _, scores, _, _ in rows)]
    notes = [f"{label} learning rates chosen: "
             + ", ".join(f"{task} {info['lr']:g}" for task, info in chosen.items())
             for label, chosen in (("single-task", tuned), ("finetune", tuned_finetune)) if chosen]
    return glue_table(rows, shown) + "".join(f"\n\n{note}" for note in notes)
