"""Metrics against hand computations, label mappings that a swap would break, and the choice of
the best checkpoint."""

import json

import pytest
import torch
from safetensors.torch import load_file

from mtl_nlp import TaskSpec
from mtl_nlp.cli import main as cli_main
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.training import trainer as trainer_module
from mtl_nlp.training.metrics import classification_metrics, tagging_metrics


def test_macro_f1_on_an_unbalanced_case_by_hand():
    # 8 "a" and 2 "b", everything predicted "a": accuracy 0.8, F1(a) = 16/18, F1(b) = 0.
    scores = classification_metrics(["a"] * 8 + ["b"] * 2, ["a"] * 10)
    assert scores["accuracy"] == pytest.approx(0.8)
    assert scores["macro_f1"] == pytest.approx((16 / 18 + 0) / 2)
    # A label only predicted, never gold, counts too: a has tp 1, fp 1, fn 1 (F1 1/2), b tp 1,
    # fn 1 (F1 2/3), c only a false positive (F1 0).
    scores = classification_metrics(["a", "a", "b", "b"], ["a", "c", "b", "a"])
    assert scores["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)


def test_entity_scores_on_imperfect_and_iob1_input():
    # Gold PER(0-1), LOC(3); predicted PER(0) only half the name, LOC(3): 1 of 2 right each way.
    scores = tagging_metrics([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "O", "O", "B-LOC"]])
    assert scores == {"precision": pytest.approx(0.5), "recall": pytest.approx(0.5), "f1": pytest.approx(0.5)}
    # IOB1 (CoNLL-2003's original scheme): an I- after O opens an entity, B- only separates two
    # adjacent entities of one type; scored like conlleval, it matches the same entities in IOB2.
    iob1 = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]]
    iob2 = [["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]]
    assert tagging_metrics(iob1, iob2) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    # A type error is a miss both ways: PER predicted where LOC is gold.
    assert tagging_metrics([["B-LOC"]], [["B-PER"]])["f1"] == 0.0


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("column", ["names", "indices"])
def test_each_text_gets_its_own_label_id_not_a_swapped_one(tmp_path, tiny_tokenizer, column):
    """Declared labels [negative, positive]: "good" rows must get id 1 and "bad" rows id 0, from
    label names as from integer indices, in every split (a swapped mapping fails here)."""
    cell = {"names": ("positive", "negative"), "indices": ("1", "0")}[column]
    rows = "text\tlabel\n" + "".join(f"good film {i}\t{cell[0]}\nbad film {i}\t{cell[1]}\n" for i in range(3))
    files = {split: write(tmp_path / f"{split}.tsv", rows) for split in ("train", "validation", "test")}
    spec = TaskSpec(name="cls", type="classification", data_files=files, format="tsv",
                    labels=("negative", "positive"))
    data = prepare_task_data([spec], tiny_tokenizer, max_length=16)["cls"]
    for split in ("train", "validation", "test"):
        features = data.splits[split]
        texts = [tiny_tokenizer.decode(list(ids), skip_special_tokens=True) for ids in features["input_ids"]]
        # (the tiny tokenizer decodes without merging subwords: the first letter tells the rows apart)
        pairs = [(text[0], label) for text, label in zip(texts, features["labels"])]
        assert pairs == [("g", 1), ("b", 0)] * 3


def test_the_checkpoint_is_the_best_validation_step_not_the_last(tiny_model_dir, tmp_path, monkeypatch):
    """Validation overall 0.5, 0.7, 0.6 at steps 1-3: the checkpoint holds the step-2 weights."""
    scores = iter([0.5, 0.7, 0.6])
    heads_at: dict[int, dict[str, torch.Tensor]] = {}

    def scripted_evaluate(accelerator, model, loaders, tasks):
        step = len(heads_at) + 1
        heads = accelerator.unwrap_model(model).heads.state_dict()
        heads_at[step] = {name: value.detach().clone() for name, value in heads.items()}
        score = next(scores)
        return {task: {"accuracy": score, "macro_f1": score} for task in tasks}

    monkeypatch.setattr(trainer_module, "evaluate", scripted_evaluate)
    output, cache = tmp_path / "run", tmp_path / "cache"
    assert cli_main(["train", f"model={tiny_model_dir}", f"output_dir={output}", f"cache_dir={cache}",
                     "mixed_precision=no", "tasks=[demo_sentiment, demo_topic]", "train.batch_size=8",
                     "train.lr=1e-2", "train.max_steps=3", "train.eval_every=1"]) == 0
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["best_step"] == 2 and state["best_validation_overall"] == pytest.approx(0.7)
    selection = json.loads((output / "mtl_nlp.json").read_text())["selection"]
    assert selection == {"step": 2, "validation_overall": pytest.approx(0.7)}
    saved = load_file(output / "heads.safetensors")
    for name, value in heads_at[2].items():
        assert torch.equal(saved[name], value), name
    assert any(not torch.equal(saved[name], value) for name, value in heads_at[3].items())
