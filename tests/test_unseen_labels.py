"""Labels that occur only in validation or test (ATIS has such intents and slot tags) are kept,
scored as errors, counted in a warning and in metrics.json, and never crash evaluation."""

import json
import logging

import pytest

from mtl_nlp import TaskSpec
from mtl_nlp.data.pipeline import TaskData, prepare_task_data
from mtl_nlp.training.evaluation import task_scores


def write(path, text):
    path.write_text(text)
    return str(path)


def test_unseen_class_labels_get_ids_past_the_heads(tmp_path, tiny_tokenizer, caplog):
    train = write(tmp_path / "train.tsv", "text\tlabel\n" + "anna\ta\nyork\tb\n" * 5)
    test = write(tmp_path / "test.tsv", "text\tlabel\nanna\ta\nyork\tc\nacme\tc\ncorp\td\n")
    spec = TaskSpec(name="cls", type="classification", format="tsv",
                    data_files={"train": train, "validation": train, "test": test})
    with caplog.at_level(logging.WARNING):
        data = prepare_task_data([spec], tiny_tokenizer, max_length=16)["cls"]
    assert data.labels == ["a", "b"]  # the head's outputs
    assert data.unseen == {"test": {"c": 2, "d": 1}}
    assert data.eval_labels == ["a", "b", "c", "d"]
    assert list(data.splits["test"]["labels"]) == [0, 2, 2, 3]
    expected = ("task cls, split test: 3 label occurrence(s) never seen in training, scored as errors: "
                "c x2, d x1")
    assert expected in caplog.text


def test_unseen_tags_are_scored_as_missed_entities(tmp_path, tiny_tokenizer):
    rows = [{"tokens": ["anna", "visited", "york"], "tags": ["B-PER", "O", "B-LOC"]}] * 4
    unseen = {"tokens": ["acme", "corp", "visited", "york"], "tags": ["B-ORG", "I-ORG", "O", "B-LOC"]}
    train = write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    test = write(tmp_path / "test.jsonl", "\n".join(json.dumps(r) for r in [rows[0], unseen]) + "\n")
    spec = TaskSpec(name="ner", type="token_classification", format="json",
                    data_files={"train": train, "validation": train, "test": test})
    data = prepare_task_data([spec], tiny_tokenizer, max_length=16)["ner"]
    assert data.unseen == {"test": {"B-ORG": 1, "I-ORG": 1}}
    assert data.eval_labels == ["B-LOC", "B-PER", "O", "B-ORG", "I-ORG"]
    # A perfect tagger of the known tags: the ORG entity is missed, the others found.
    gold = [[-100, 1, 2, 0, -100], [-100, 3, 4, 2, 0, -100]]
    predicted = [[0, 1, 2, 0, 0], [0, 2, 2, 2, 0, 0]]
    metrics, _ = task_scores("token_classification", predicted, gold, data.eval_labels)
    assert metrics["precision"] == 1.0
    assert metrics["recall"] == pytest.approx(3 / 4)


def test_declared_labels_also_count_unseen_ones_instead_of_failing(tmp_path, tiny_tokenizer):
    train = write(tmp_path / "train.tsv", "text\tlabel\n" + "anna\t0\nyork\t1\n" * 5)
    test = write(tmp_path / "test.tsv", "text\tlabel\nanna\t0\nyork\t7\n")
    spec = TaskSpec(name="cls", type="classification", format="tsv", labels=("neg", "pos"),
                    data_files={"train": train, "validation": train, "test": test})
    data = prepare_task_data([spec], tiny_tokenizer, max_length=16)["cls"]
    assert data.unseen == {"test": {"7": 1}}
    assert list(data.splits["test"]["labels"]) == [0, 2]


def test_multilabel_unseen_labels_are_missed_labels():
    data = TaskData(spec=TaskSpec(name="m", type="multilabel", dataset="x"), labels=["a", "b"], splits=None,
                    unseen={"test": {"c": 1}})
    assert data.eval_labels == ["a", "b", "c"]
    metrics, _ = task_scores("multilabel", [[1, 0, 0], [0, 1, 0]], [[1, 0, 1], [0, 1, 0]], data.eval_labels)
    assert metrics["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))


def test_a_run_reports_unseen_labels_and_main_metrics(recipe, tiny_model_dir, tmp_path):
    train = write(tmp_path / "train.tsv", "text\tlabel\n" + "anna visited\ta\nyork corp\tb\n" * 8)
    test = write(tmp_path / "test.tsv", "text\tlabel\nanna visited\ta\nyork corp\tc\n")
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"tasks": [{
        "name": "cls", "type": "classification", "format": "tsv", "metric": "macro_f1",
        "data_files": {"train": train, "validation": train, "test": test}}]}))
    output = tmp_path / "run"
    recipe.main(["--config", str(config), f"model={tiny_model_dir}", f"output_dir={output}",
                 f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no", "train.max_steps=2"])
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["unseen_labels"] == {"cls": {"c": 1}}
    assert metrics["main_metrics"] == {"cls": "macro_f1"}
    assert metrics["overall"]["score"] == metrics["cls"]["macro_f1"]
    assert metrics["cls"]["accuracy"] <= 0.5  # the row labelled c is an error whatever is predicted
    assert metrics["reports"]["cls"]["c"]["support"] == 1
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["history"][-1]["main_metrics"] == {"cls": "macro_f1"}
