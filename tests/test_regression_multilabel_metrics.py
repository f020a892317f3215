"""Hand-computed checks of the regression and multilabel metrics and of the main metrics."""

import math

import pytest

from mtl_nlp.common.task_types import MAIN_METRIC
from mtl_nlp.training.metrics import (
    average_ranks,
    multilabel_metrics,
    overall_score,
    pearson,
    regression_metrics,
    spearman,
)


def test_pearson_by_hand():
    # x - mean = -1.5 -.5 .5 1.5, y - mean = -3 -1 0 4: covariance sum 11, squares 5 and 26.
    assert pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(5 * 26), abs=1e-15)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0, abs=1e-15)
    assert pearson([1, 2, 3], [5, 5, 5]) == 0.0  # undefined for a constant side: 0.0
    assert pearson([], []) == 0.0


def test_average_ranks_share_the_mean_rank_of_a_tie():
    assert average_ranks([3, 1, 3, 2, 3]) == [4.0, 1.0, 4.0, 2.0, 4.0]
    assert average_ranks([0.5, 0.5]) == [1.5, 1.5]


def test_spearman_with_ties_by_hand():
    # ranks x = 1 2.5 2.5 4, y = 1 3 2 4: deviations -1.5 0 0 1.5 and -1.5 .5 -.5 1.5,
    # covariance sum 4.5, squares 4.5 and 5, so rho = 4.5 / sqrt(22.5) = sqrt(0.9).
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9), abs=1e-15)
    # A monotone but non-linear relation: Spearman 1, Pearson below 1.
    assert spearman([1, 2, 3, 4], [1, 4, 9, 100]) == 1.0
    assert pearson([1, 2, 3, 4], [1, 4, 9, 100]) < 0.9


def test_regression_metrics_by_hand():
    scores = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert scores["mse"] == pytest.approx(1 / 3, abs=1e-15)
    assert scores["spearman"] == 1.0
    # predicted - mean = -4/3 -1/3 5/3, gold - mean = -1 0 1: covariance 3, squares 14/3 and 2.
    assert scores["pearson"] == pytest.approx(3 / math.sqrt(28 / 3), abs=1e-15)
    assert regression_metrics([], []) == {"pearson": 0.0, "spearman": 0.0, "mse": 0.0}
    with pytest.raises(ValueError, match="2 gold values but 1 predictions"):
        regression_metrics([1.0, 2.0], [1.0])


def test_multilabel_micro_and_macro_f1_by_hand():
    gold = [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    predicted = [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    # label 0: tp 1 (F1 1); label 1: tp 1 fp 1 (F1 2/3); label 2: fn 1 (F1 0); label 3 never
    # occurs and is left out of the macro mean. Micro: tp 2, fp 1, fn 1 -> 4/6.
    scores = multilabel_metrics(gold, predicted)
    assert scores["micro_f1"] == pytest.approx(2 / 3, abs=1e-15)
    assert scores["macro_f1"] == pytest.approx(5 / 9, abs=1e-15)
    assert multilabel_metrics([[1, 0]], [[1, 0]]) == {"micro_f1": 1.0, "macro_f1": 1.0}
    assert multilabel_metrics([[0, 0]], [[0, 0]]) == {"micro_f1": 0.0, "macro_f1": 0.0}
    with pytest.raises(ValueError, match="rows must all hold 2 labels"):
        multilabel_metrics([[1, 0], [1]], [[1, 0], [1]])


def test_main_metrics_and_overall_score_of_the_new_types():
    assert MAIN_METRIC["regression"] == "pearson" and MAIN_METRIC["multilabel"] == "micro_f1"
    metrics = {
        "stsb": {"pearson": 0.8, "spearman": 0.7, "mse": 1.2},
        "aspects": {"micro_f1": 0.6, "macro_f1": 0.5},
        "sst2": {"accuracy": 0.9, "macro_f1": 0.9},
    }
    types = {"stsb": "regression", "aspects": "multilabel", "sst2": "classification"}
    mains = {task: MAIN_METRIC[kind] for task, kind in types.items()}
    assert overall_score(metrics, mains) == pytest.approx((0.8 + 0.6 + 0.9) / 3, abs=1e-15)
