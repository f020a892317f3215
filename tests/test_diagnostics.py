"""Diagnostics figures and the main-metric rule: pure functions over a run's JSON files."""

import math
import os
import subprocess
import sys

import pytest

from mtl_nlp.common.task_types import MAIN_METRIC, REPORTED_METRICS
from mtl_nlp.reports import plots
from mtl_nlp.reports.plots import mean_cosine, plot_conflicts, plot_curves
from mtl_nlp.reports.run_results import main_metric
from mtl_nlp.training import metrics as training_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    import matplotlib.image

    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 300 and image.shape[1] > 600  # a full figure, not an empty canvas


def history_entry(step, ner_f1, sst2_accuracy):
    return {
        "step": step, "overall": (ner_f1 + sst2_accuracy) / 2, "eval_seconds": 3.1,
        "eval_examples_per_second": 400.0,
        "ner": {"precision": ner_f1 - 0.01, "recall": ner_f1 + 0.01, "f1": ner_f1},
        "sst2": {"accuracy": sst2_accuracy, "macro_f1": sst2_accuracy - 0.02},
    }


def typical_state():
    loss_history = [{"step": 10, "losses": {"sst2": 0.7}}]  # ner not drawn yet
    loss_history += [
        {"step": step, "losses": {"ner": 2.0 / step, "sst2": 0.7 - step / 1000},
         "weights": {"ner": 1.0, "sst2": 1.0}}
        for step in range(20, 310, 10)
    ]
    history = [history_entry(100, 0.5, 0.7), history_entry(200, 0.7, 0.8), history_entry(300, 0.75, 0.78)]
    return {"step": 300, "best_step": 300, "history": history, "loss_history": loss_history}


def test_plot_curves_writes_a_png(tmp_path):
    plot_curves(typical_state(), tmp_path / "curves.png")
    assert_png(tmp_path / "curves.png")


@pytest.mark.parametrize("state", [
    {"history": [history_entry(5, 0.1, 0.5)], "loss_history": []},  # first evaluation, no loss yet
    {"history": [{"step": 7, "overall": 0.4, "sts": {"pearson": 0.4, "spearman": 0.3, "mse": 1.2}}],
     "loss_history": [{"step": 7, "losses": {"sts": 1.3}}]},  # one task, one point each
    {"history": [], "loss_history": []},
], ids=["single-point-no-loss", "one-task", "empty"])
def test_plot_curves_edge_cases(tmp_path, state):
    plot_curves(state, tmp_path / "out" / "curves.png")  # also creates the folder
    assert_png(tmp_path / "out" / "curves.png")


def conflicts(records, tasks=("ner", "sst2", "ag_news")):
    return {"tasks": list(tasks), "every": 50, "step_mode": "all_tasks", "records": records}


def test_plot_conflicts_writes_a_png(tmp_path):
    records = [
        {"step": 50 * k, "cosine": [[1.0, -0.1 * k, 0.2], [-0.1 * k, 1.0, 0.3], [0.2, 0.3, 1.0]]}
        for k in range(1, 6)
    ]
    plot_conflicts(conflicts(records), tmp_path / "conflicts.png")
    assert_png(tmp_path / "conflicts.png")


def test_plot_conflicts_one_record_two_tasks(tmp_path):
    records = [{"step": 50, "cosine": [[1.0, -0.4], [-0.4, None]]}]  # sst2 not seen: None
    plot_conflicts(conflicts(records, ("ner", "sst2")), tmp_path / "conflicts.png")
    assert_png(tmp_path / "conflicts.png")


def test_plot_conflicts_rejects_a_matrix_of_the_wrong_size(tmp_path):
    with pytest.raises(ValueError, match="3 tasks but 2 x 2"):
        plot_conflicts(conflicts([{"step": 1, "cosine": [[1.0, 0.0], [0.0, 1.0]]}]), tmp_path / "c.png")


def test_figures_draw_on_the_agg_canvas():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    assert isinstance(plots._agg_figure().canvas, FigureCanvasAgg)


def test_headless_and_import_free_of_matplotlib(tmp_path):
    """`import mtl_nlp` does not load matplotlib, and drawing works without a display even when
    the session asks for an interactive backend (pyplot is never involved)."""
    script = (
        "import sys, mtl_nlp\n"
        "assert 'matplotlib' not in sys.modules, 'import mtl_nlp loaded matplotlib'\n"
        "from mtl_nlp.reports.plots import plot_curves\n"
        f"plot_curves({{'history': [], 'loss_history': [{{'step': 1, 'losses': {{'a': 1.0}}}}]}}, "
        f"{str(tmp_path / 'c.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {**os.environ, "MPLBACKEND": "TkAgg"}
    env.pop("DISPLAY", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"precision": 0.8, "recall": 0.9, "f1": 0.85}, "f1"),
    ({"accuracy": 0.9, "macro_f1": 0.88}, "accuracy"),
    ({"pearson": 0.7, "spearman": 0.6, "mse": 0.4}, "pearson"),
    ({"micro_f1": 0.6, "macro_f1": 0.5}, "micro_f1"),
    ({"accuracy": 0.9, "macro_f1": 0.88, "loss": 0.3}, "accuracy"),  # an extra key is fine
])
def test_main_metric_by_key_set(metrics, expected):
    assert main_metric(metrics) == expected


@pytest.mark.parametrize("metrics", [
    {"bleu": 0.3},
    {"macro_f1": 0.5},  # classification or multilabel: ambiguous
    {"accuracy": 0.9, "macro_f1": 0.8, "micro_f1": 0.7},  # both
])
def test_main_metric_unknown_set_is_a_clear_error(metrics):
    with pytest.raises(ValueError, match="unknown metric set .*expected one of"):
        main_metric(metrics)


def test_main_metric_agrees_with_the_training_metrics():
    from mtl_nlp.training.squad_metrics import squad_scores

    """The key sets task_types records are those training.metrics produces."""
    produced = {
        "token_classification": training_metrics.tagging_metrics([["B-PER", "O"]], [["B-PER", "O"]]),
        "classification": training_metrics.classification_metrics(["a"], ["a"]),
        "regression": training_metrics.regression_metrics([1.0, 2.0], [1.0, 2.5]),
        "multilabel": training_metrics.multilabel_metrics([[1, 0]], [[1, 1]]),
        "multiple_choice": training_metrics.choice_metrics([1, 0], [1, 1]),
        "extractive_qa": squad_scores(["Paris"], [["Paris", "in Paris"]]),
    }
    assert set(produced) == set(MAIN_METRIC) == set(REPORTED_METRICS)
    for task_type, metrics in produced.items():
        assert REPORTED_METRICS[task_type] <= set(metrics)
        assert main_metric(metrics) == MAIN_METRIC[task_type]


def test_mean_cosine_by_hand():
    records = [
        {"step": 10, "cosine": [[1.0, -0.2], [-0.2, 1.0]]},
        {"step": 20, "cosine": [[1.0, 0.4], [0.4, None]]},  # task 2 not seen this time
        {"step": 30, "cosine": [[None, None], [None, 1.0]]},
    ]
    mean = mean_cosine(records)
    assert mean[0][0] == pytest.approx(1.0) and mean[1][1] == pytest.approx(1.0)
    assert mean[0][1] == pytest.approx(0.1) and mean[1][0] == pytest.approx(0.1)
    assert mean_cosine(records[:1]) == [[1.0, -0.2], [-0.2, 1.0]]
    assert math.isnan(mean_cosine([{"step": 1, "cosine": [[None]]}])[0][0])


def test_mean_cosine_errors():
    with pytest.raises(ValueError, match="no conflict records"):
        mean_cosine([])
    with pytest.raises(ValueError, match="step 2: cosine matrix is not 2 x 2"):
        mean_cosine([{"step": 1, "cosine": [[1.0, 0.0], [0.0, 1.0]]}, {"step": 2, "cosine": [[1.0]]}])
