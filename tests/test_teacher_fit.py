"""A teacher's fit to the gold labels: agreement and mean top probability, by hand, and the warning
for a teacher right on most rows but close to uniform."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from datasets import Dataset

from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.distill.teacher_fit import report_fit, teacher_fit
from mtl_nlp.distill.teacher_outputs import attach_teacher_outputs
from mtl_nlp.modeling.model import MultiTaskModel
from mtl_nlp.registry import get_task
from mtl_nlp.training.setup import head_configs

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)
SENTENCE_ROWS = {
    # probabilities 1/4 1/4 1/2 (gold 2: right), 3/5 1/5 1/5 (gold 0: right), 1/6 2/3 1/6 (gold 0:
    # wrong), and a row without a gold label, which does not count
    "teacher": [[0.0, 0.0, LN2], [LN3, 0.0, 0.0], [0.0, LN4, 0.0], [9.0, 0.0, 0.0]],
    "labels": [2, 0, 0, -100],
}


def test_sentence_fit_counts_rows_with_gold_labels_by_hand():
    fit = teacher_fit(Dataset.from_dict(SENTENCE_ROWS), {"intent": "classification"}, False, 1.0,
                      batch_rows=2)
    assert fit["intent"]["scored"] == 3
    assert fit["intent"]["agreement"] == pytest.approx(2 / 3)
    assert fit["intent"]["confidence"] == pytest.approx((1 / 2 + 3 / 5 + 2 / 3) / 3)


def test_a_lower_temperature_sharpens_the_top_probability_but_not_the_agreement():
    fit = teacher_fit(Dataset.from_dict(SENTENCE_ROWS), {"intent": "classification"}, False, 0.5)
    # at T = 1/2 the probabilities are the squares, normalised: 1/6 1/6 2/3, 9/11 1/11 1/11, 1/18 16/18 1/18
    assert fit["intent"]["agreement"] == pytest.approx(2 / 3)
    assert fit["intent"]["confidence"] == pytest.approx((2 / 3 + 9 / 11 + 16 / 18) / 3)


def test_tagging_fit_counts_word_starts_the_teacher_scored():
    nan = [float("nan")] * 2
    rows = {
        # row 1: a word start the teacher scored as label 1 (gold 1), a later piece (-100), a word
        # start it did not reach (NaN, gold 0); row 2: one word start scored 3/4 for label 0, gold 1
        "teacher": [[[0.0, LN3], nan, nan], [[LN3, 0.0]]],
        "labels": [[1, -100, 0], [1]],
    }
    fit = teacher_fit(Dataset.from_dict(rows), {"ner": "token_classification"}, False, 1.0)
    assert fit["ner"] == {"agreement": pytest.approx(1 / 2), "confidence": pytest.approx(3 / 4), "scored": 2}


def test_an_entrys_heads_are_fitted_apart_and_regression_heads_are_skipped():
    rows = {"teacher": [{"intent": [LN3, 0.0], "score": [0.3]}, {"intent": [0.0, LN3], "score": [0.9]}],
            "labels": [{"intent": 0, "score": 0.5}, {"intent": 0, "score": 0.7}]}
    fit = teacher_fit(Dataset.from_dict(rows), {"intent": "classification", "score": "regression"}, True, 1.0)
    assert set(fit) == {"intent"}
    assert fit["intent"]["agreement"] == pytest.approx(1 / 2)
    assert fit["intent"]["confidence"] == pytest.approx(3 / 4)


def test_a_teacher_right_on_most_rows_but_close_to_uniform_is_warned_about(caplog):
    caplog.set_level(logging.INFO, logger="mtl_nlp.distill.teacher_fit")
    report_fit("banking77", {"banking77": {"agreement": 0.71, "confidence": 0.12, "scored": 9503}}, 1.0)
    warnings = [record.message for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "banking77" in warnings[0] and "71.0%" in warnings[0] and "0.120" in warnings[0]
    assert "undertrained" in warnings[0] and "train it longer" in warnings[0]
    caplog.clear()
    report_fit("sst2", {"sst2": {"agreement": 0.9, "confidence": 0.85, "scored": 100}}, 1.0)
    assert [record.levelno for record in caplog.records] == [logging.INFO]


def test_attaching_outputs_records_the_fit_beside_the_cache(tiny_model_dir, tiny_tokenizer, tmp_path):
    def prepare():
        return prepare_task_data([get_task("demo_sentiment")], tiny_tokenizer, max_length=32,
                                 cache_dir=str(tmp_path / "cache"), max_train_examples=24)

    torch.manual_seed(0)
    MultiTaskModel.from_encoder(str(tiny_model_dir), head_configs(prepare())).save_pretrained(
        tmp_path / "teacher", tiny_tokenizer, extra={"max_length": 32})
    tasks = prepare()
    attach_teacher_outputs(tasks, {"demo_sentiment": str(tmp_path / "teacher")}, tiny_tokenizer, 32, 8,
                           temperature=2.0)
    train = tasks["demo_sentiment"].splits["train"]
    logits, gold = torch.tensor(train["teacher"]), torch.tensor(train["labels"])
    probabilities = torch.softmax(logits / 2.0, dim=-1)
    (record_file,) = (tmp_path / "cache").rglob("teacher-outputs-*.json")
    fit = json.loads(record_file.read_text())["fit"]
    assert fit["temperature"] == 2.0
    assert fit["demo_sentiment"]["scored"] == len(train)
    assert fit["demo_sentiment"]["agreement"] == pytest.approx(
        float((probabilities.argmax(-1) == gold).float().mean()))
    assert fit["demo_sentiment"]["confidence"] == pytest.approx(float(probabilities.max(-1).values.mean()))
