"""Per-class reports checked against hand counts."""

import pytest

from mtl_nlp.training.class_reports import (
    classification_report,
    format_reports,
    multilabel_report,
    tagging_report,
)


def test_classification_report_counts_each_label():
    gold = ["pos", "pos", "neg", "neg", "neg"]
    predicted = ["pos", "neg", "neg", "neg", "pos"]
    report = classification_report(gold, predicted, ["neg", "pos", "neutral"])
    assert list(report) == ["neg", "pos", "neutral"]
    # neg: tp 2, fp 1, fn 1; pos: tp 1, fp 1, fn 1; neutral: never seen.
    assert report["neg"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert report["pos"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert report["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_multilabel_report_counts_each_label_column():
    gold = [[1, 0, 1], [0, 1, 1], [1, 1, 0]]
    predicted = [[1, 1, 0], [0, 1, 1], [0, 1, 0]]
    report = multilabel_report(gold, predicted, ["food", "price", "service"])
    # food: tp 1, fn 1; price: tp 2, fp 1; service: tp 1, fn 1.
    assert report["food"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert report["price"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert report["service"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})


def test_tagging_report_is_per_entity_type():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-LOC", "O"]]
    report = tagging_report(gold, predicted)
    assert list(report) == ["LOC", "ORG", "PER"]
    assert report["LOC"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert report["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert tagging_report([["O"]], [["O"]]) == {}


def test_format_reports_prints_one_table_per_task():
    row = {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 4}
    text = format_reports({"sst2": {"negative": row}})
    assert text.splitlines() == [
        "sst2:",
        "  label     precision  recall      f1  support",
        "  negative     0.5000  1.0000  0.6667        4",
    ]
