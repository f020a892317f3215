"""The figures of a run: training curves, gradient conflicts and task affinity. Pure functions over
the JSON files a run writes (trainer_state.json, conflicts.json, affinity.json), so they need no
model and no training to run or test.

matplotlib is imported only inside the drawing functions, so `import mtl_nlp` stays free of it,
and only through the object-oriented Figure API with the Agg canvas: drawing never touches
pyplot's global backend, works without a display, and leaves an interactive session as it was.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from mtl_nlp.reports.run_results import OVERALL, task_entries, task_main_metric
from mtl_nlp.reports.task_groups import NOISE_FACTOR, every_steps, matrix_rows, off_diagonal, value_format


def mean_cosine(records: list[dict[str, Any]]) -> list[list[float]]:
    """Element-wise mean of the records' task x task cosine matrices. A cell missing (None) in a
    record, a task not seen in that step, is left out of its mean; NaN where never measured."""
    if not records:
        raise ValueError("no conflict records to average")
    size = len(records[0]["cosine"])
    sums = [[0.0] * size for _ in range(size)]
    counts = [[0] * size for _ in range(size)]
    for record in records:
        matrix = record["cosine"]
        if len(matrix) != size or any(len(row) != size for row in matrix):
            raise ValueError(f"step {record.get('step')}: cosine matrix is not {size} x {size}")
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                if value is not None:
                    sums[i][j] += value
                    counts[i][j] += 1
    return [
        [sums[i][j] / counts[i][j] if counts[i][j] else math.nan for j in range(size)]
        for i in range(size)
    ]



# --- figures -------------------------------------------------------------------------------

# Series with fewer points than this get markers: a single evaluation or loss record is
# otherwise an invisible zero-length line.
MARKER_BELOW = 30


def plot_curves(state: dict[str, Any], path: str | Path) -> None:
    """Write curves.png from a trainer_state.json dict: each task's running training loss (top)
    and validation main metric with the overall score dashed (bottom), over optimizer steps."""
    loss_history = state.get("loss_history") or []
    history = state.get("history") or []
    colors = _task_colors(loss_history, history)  # one color per task in both panels
    figure = _agg_figure(figsize=(9, 7.5))
    loss_ax, score_ax = figure.subplots(2, 1, sharex=True)
    _draw_losses(loss_ax, loss_history, colors)
    _draw_scores(score_ax, history, colors, state.get("best_step"))
    score_ax.set_xlabel("optimizer step")
    _step_axis(score_ax)
    title = "Training curves"
    if state.get("step") is not None:
        title += f" (step {state['step']})"
    figure.suptitle(title, fontweight="bold")
    _save(figure, path)


def plot_conflicts(conflicts: dict[str, Any], path: str | Path) -> None:
    """Write the gradient-conflict figure from a conflicts.json dict: the mean task x task cosine
    matrix as a heatmap (left) and each task pair's cosine over steps (right)."""
    tasks = list(conflicts["tasks"])
    records = conflicts["records"]
    mean = mean_cosine(records)
    if len(mean) != len(tasks):
        raise ValueError(f"{len(tasks)} tasks but {len(mean)} x {len(mean)} cosine matrices")
    figure = _agg_figure(figsize=(13, 5.2))
    # The narrow middle column is empty: it keeps the colorbar's label clear of the right
    # panel's axis label.
    heat_ax, spacer, pair_ax = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1, 0.06, 1.4]})
    spacer.set_axis_off()
    title = f"mean cosine over {len(records)} measurement{'s' if len(records) != 1 else ''}"
    _draw_heatmap(figure, heat_ax, tasks, mean, title, "mean cosine")
    _draw_pairs(pair_ax, tasks, records)
    details = [f"every {conflicts['every']} steps"] if conflicts.get("every") else []
    if conflicts.get("step_mode"):
        details.append(f"step_mode {conflicts['step_mode']}")
    title = "Gradient cosine between tasks on the shared encoder"
    figure.suptitle(title + (f" ({', '.join(details)})" if details else ""), fontweight="bold")
    _save(figure, path)


def plot_affinity(affinity: dict[str, Any], path: str | Path) -> None:
    """Write the inter-task affinity heatmap from an affinity.json dict: Z(row -> column), the
    change of the column task's loss from a lookahead step on the row task, each cell with its
    standard error, on a scale centred at 0 that the noise cannot fill, with the recommendation
    below."""
    tasks = list(affinity["tasks"])
    matrix = matrix_rows(tasks, affinity["matrix"])
    values = [value for value in off_diagonal(matrix) if math.isfinite(value)]
    noise = affinity.get("noise")
    limit = affinity_scale(values, noise)
    # The diagonal is grey, its value still written: a task's step lowers its own loss far more
    # than another's (often 100 times) and would take the whole scale.
    colored = [[math.nan if i == j else value for j, value in enumerate(row)] for i, row in enumerate(matrix)]
    size = len(tasks)
    width = max(6.5, 0.9 * size + 3.5)
    figure = _agg_figure(figsize=(width, max(5.5, 0.8 * size + 2.5)))
    ax = figure.subplots()
    count = affinity["measurements"]
    title = (f"mean of {count} measurement{'s' if count != 1 else ''}, {every_steps(affinity['every'])}\n"
             f"{_noise_caption(affinity, value_format(values))}"
             "diagonal (grey): self-affinity, not used for grouping")
    _draw_heatmap(figure, ax, tasks, matrix, title, "affinity (> 0: the step lowers the loss)", limit,
                  value_format(values), colored)
    if noise:
        errors = matrix_rows(tasks, noise["standard_error"])
        _draw_noise(ax, matrix, errors, limit, NOISE_FACTOR * noise["level"], value_format(values))
    ax.set_ylabel("lookahead step on")
    ax.set_xlabel("loss of")
    recommended = affinity.get("recommended")
    if recommended:
        text = f"recommended: {recommended['advice']}"
        figure.supxlabel(textwrap.fill(text, int(width * 12)), fontsize="medium")
    figure.suptitle("Inter-task affinity (TAG) on the shared encoder", fontweight="bold")
    _save(figure, path)


def affinity_scale(values: list[float], noise: dict[str, Any] | None) -> float:
    """Half-width of the affinity colour scale, which is centred at 0: the largest affinity
    between tasks, but at least twice the noise band (NOISE_FACTOR standard errors at the median
    noise level), so affinities within the noise stay pale instead of stretching the colours
    across the whole scale; 1 when there is nothing to scale to."""
    largest = max((abs(value) for value in values), default=0.0)
    floor = 2 * NOISE_FACTOR * noise["level"] if noise else 0.0
    return max(largest, floor) or 1.0


def _noise_caption(affinity: dict[str, Any], fmt: str) -> str:
    """The noise level for the title and a line break, or why there is none (nothing for an
    affinity.json written before the probe measured its noise)."""
    if "noise" not in affinity:
        return ""
    noise = affinity["noise"]
    if noise is None:
        return "noise: not estimated (one measurement), no grouping supported\n"
    level = fmt.format(noise["level"]).lstrip("+")
    return f"noise: ±{level} standard error (median); hatched: within {NOISE_FACTOR:g} SE\n"


def _draw_noise(
    ax: Any, matrix: list[list[float]], errors: list[list[float]], limit: float, band: float, fmt: str,
) -> None:
    """Each off-diagonal cell's standard error under its value, and the noise band [-band, band]
    hatched on the colorbar."""
    for i, row in enumerate(errors):
        for j, error in enumerate(row):
            if i != j:
                # light on the dark cells, where _draw_heatmap writes the value in white
                color = "lightgray" if abs(matrix[i][j]) > 0.6 * limit else "dimgray"
                ax.text(j, i + 0.3, "±" + fmt.format(error).lstrip("+"), ha="center", va="center",
                        fontsize="x-small", color=color)
    colorbar = ax.images[0].colorbar
    colorbar.ax.axhspan(-band, band, facecolor="none", edgecolor="black", hatch="///", linewidth=0)


def _agg_figure(**kwargs: Any) -> Any:
    """A Figure on the Agg canvas, independent of pyplot and of the session's backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(constrained_layout=True, **kwargs)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=110)


def _task_colors(loss_history: list[dict], history: list[dict]) -> dict[str, str]:
    """Tasks in order of first appearance, each with a color of the default cycle."""
    order: dict[str, None] = {}
    for entry in loss_history:
        order.update(dict.fromkeys(entry.get("losses", {})))
    for entry in history:
        order.update(dict.fromkeys(task_entries(entry)))
    return {task: f"C{index % 10}" for index, task in enumerate(order)}


def _draw_losses(ax: Any, loss_history: list[dict], colors: dict[str, str]) -> None:
    ax.set_title("training loss per task (running mean)", loc="left", fontsize="medium")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    values = []
    for task, color in colors.items():
        points = [(e["step"], e["losses"][task]) for e in loss_history if task in e.get("losses", {})]
        if not points:
            continue
        steps, losses = zip(*points)
        values.extend(losses)
        ax.plot(steps, losses, color=color, label=task, marker="o" if len(points) < MARKER_BELOW else None,
                markersize=3)
    if not values:
        _say(ax, "no training loss recorded yet")
        return
    finite = [v for v in values if math.isfinite(v)]
    # Task losses differ by orders of magnitude (a tagging loss near 0.05 beside a
    # classification loss near 1); on a log axis the small one does not look flat.
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
        ax.set_yscale("log")
    _legend(ax)


def _draw_scores(ax: Any, history: list[dict], colors: dict[str, str], best_step: Any) -> None:
    ax.set_title("validation main metric per task", loc="left", fontsize="medium")
    ax.set_ylabel("validation score")
    ax.grid(alpha=0.3)
    if not history:
        _say(ax, "no validation results yet")
        return
    marker = "o" if len(history) < MARKER_BELOW else None
    for task, color in colors.items():
        entries = [e for e in history if isinstance(e.get(task), dict)]
        points = [(e["step"], e[task]) for e in entries]
        if not points:
            continue
        metric = task_main_metric(entries[0], task)
        ax.plot([s for s, _ in points], [m[metric] for _, m in points], color=color, marker=marker,
                markersize=4, label=f"{task} ({metric})")
    overall = [(e["step"], e[OVERALL]) for e in history if e.get(OVERALL) is not None]
    if overall:
        ax.plot(*zip(*overall), color="black", linestyle="--", marker=marker, markersize=4,
                label="overall (mean)")
    if best_step is not None and any(e["step"] == best_step for e in history):
        ax.axvline(best_step, color="gray", linestyle=":", label=f"best checkpoint (step {best_step})")
    _legend(ax)


def _draw_heatmap(
    figure: Any, ax: Any, tasks: list[str], matrix: list[list[float]], title: str, label: str,
    limit: float = 1.0, fmt: str = "{:.2f}", colored: list[list[float]] | None = None,
) -> None:
    """Task x task heatmap on a symmetric scale [-limit, limit], each cell annotated with its
    value in `matrix`; `colored` (default: `matrix`) gives the colors, NaN cells grey."""
    import matplotlib

    # Red for conflict, blue for agreement; the scale is symmetric so 0 is white (cosines keep the
    # fixed [-1, 1], so figures of different runs compare), and cells never measured (NaN) show grey.
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="lightgray")
    colored = matrix if colored is None else colored
    image = ax.imshow(colored, cmap=cmap, vmin=-limit, vmax=limit)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            text = "n/a" if math.isnan(value) else fmt.format(value)
            dark = not math.isnan(colored[i][j]) and abs(colored[i][j]) > 0.6 * limit
            color = "white" if dark else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize="medium")
    positions = list(range(len(tasks)))
    ax.set_xticks(positions)
    ax.set_xticklabels(tasks, rotation=30, ha="right")
    ax.set_yticks(positions)
    ax.set_yticklabels(tasks)
    ax.set_title(title, fontsize="medium")
    # Scientific values get scientific ticks: the colorbar's own "1e-5" offset label would sit on
    # the title.
    ticks = "%.1e" if "e}" in fmt else None
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label, format=ticks)


def _draw_pairs(ax: Any, tasks: list[str], records: list[dict]) -> None:
    ax.set_title("cosine per task pair over steps (< 0: conflict)", loc="left", fontsize="medium")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cosine")
    ax.set_ylim(-1.05, 1.05)
    ax.axhspan(-1.05, 0, color="tab:red", alpha=0.06)
    ax.axhline(0, color="gray", linewidth=1)
    ax.grid(alpha=0.3)
    marker = "o" if len(records) < MARKER_BELOW else None
    pairs = [(i, j) for i in range(len(tasks)) for j in range(i + 1, len(tasks))]
    for index, (i, j) in enumerate(pairs):
        points = [(r["step"], r["cosine"][i][j]) for r in records if r["cosine"][i][j] is not None]
        if points:
            ax.plot(*zip(*points), color=f"C{index % 10}", marker=marker, markersize=4,
                    label=f"{tasks[i]} / {tasks[j]}")
    _step_axis(ax)
    if not pairs:
        _say(ax, "one task: no pairs to compare")
        return
    _legend(ax)


def _step_axis(ax: Any) -> None:
    """Steps from 0 with whole-number ticks, also when there is a single point (autoscaling
    would otherwise zoom in on it with ticks like 2.96, 3.00, 3.04)."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend(ax: Any) -> None:
    """Legend outside the axes, on the right, so it never hides a curve."""
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False,
                  ncol=1 if len(handles) <= 12 else 2)


def _say(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="gray")
