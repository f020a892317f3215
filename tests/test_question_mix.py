"""Extractive QA and multiple choice in a mix with tagging and classification, under the multi-task
strategies: sharing shapes, loss weighting and gradient surgery, sampling schedules and exact
resume (two DDP processes train the mix in test_strategies_distributed)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from question_mix_data import QUESTION_MIX_TASKS as TASKS
from question_mix_data import question_mix
from test_exact_resume import assert_same_weights, recorded  # noqa: F401 (a fixture)
from test_extractive_qa import FACTS

from mtl_nlp import MultiTaskModel
from mtl_nlp.cli import main as cli_main
from mtl_nlp.inference import Predictor

SETTINGS = ["mixed_precision=no", "train.batch_size=4", "train.lr=1e-3", "max_length=32", "stride=4",
            "max_train_examples=24", "max_eval_examples=8"]


def test_question_heads_read_a_lower_layer_or_a_layer_mix(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    tasks = question_mix(tmp_path, facts_fields=", layer: 1", quiz_fields=", layer_mix: true")
    assert cli_main(["train", f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", *SETTINGS,
                     "train.max_steps=4", "sampling.strategy=round_robin", f"output_dir={out}", tasks]) == 0
    heads = {head["name"]: head for head in json.loads((out / "mtl_nlp.json").read_text())["tasks"]}
    assert heads["facts"]["layer"] == 1 and heads["quiz"]["layer_mix"] is True
    answers = Predictor.from_pretrained(out, mixed_precision="no").predict(
        [{"question": "where does anna live ?", "context": FACTS[0][0]},
         {"question": "what barks ?", "choices": ["cat", "dog"]}])
    assert set(answers[0]) == {"facts"} and set(answers[1]) == {"quiz"}


@pytest.mark.parametrize("strategy", [
    ("train.step_mode=all_tasks", "weighting.method=cagrad", "sharing.private_layers=1",
     "sharing.soft_l2=0.1"),
    ("weighting.method=uncertainty", "sampling.strategy=round_robin", "sharing.freeze_layers=1"),
    ("sampling.strategy=annealed", "weighting.method=dwa", "weighting.window=2",
     "sharing.freeze_embeddings=true"),
], ids=["all_tasks-cagrad-private-soft_l2", "uncertainty-round_robin-frozen",
        "annealed-dwa-frozen_embeddings"])
def test_a_question_mix_trains_under_each_strategy_and_answers_every_task(tiny_model_dir, tiny_tokenizer,
                                                                           tmp_path, strategy):
    out = tmp_path / "run"
    assert cli_main(["train", f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", *SETTINGS,
                     "train.max_steps=8", f"output_dir={out}", question_mix(tmp_path), *strategy]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {task: sorted(metrics[task]) for task in TASKS} == {
        "facts": ["exact_match", "f1"], "quiz": ["accuracy"], "demo_ner": ["f1", "precision", "recall"],
        "demo_sentiment": ["accuracy", "f1", "macro_f1", "matthews_correlation"]}
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["step"] == 8
    trained = {task for entry in state["loss_history"] for task in entry["losses"]}
    drawn = "train.step_mode=all_tasks" not in strategy and "sampling.strategy=round_robin" not in strategy
    # every task trained (a drawn schedule: the tasks it drew in 8 steps)
    assert trained <= set(TASKS) and len(trained) >= 2 if drawn else trained == set(TASKS)
    assert all(math.isfinite(loss) for entry in state["loss_history"] for loss in entry["losses"].values())
    predictor = Predictor.from_pretrained(out, mixed_precision="no")
    answers = predictor.predict([{"question": "where does anna live ?", "context": FACTS[0][0]},
                                 {"question": "what barks ?", "choices": ["cat", "dog"]},
                                 "anna visited new york ."])
    answer = answers[0]["facts"]
    assert FACTS[0][0][answer["start"]:answer["end"]] == answer["answer"]
    model = MultiTaskModel.from_pretrained(out).eval()
    rows = tiny_tokenizer(["what barks ?"] * 2, ["cat", "dog"], padding=True, return_tensors="pt")
    with torch.no_grad():
        scores = model.forward_all(**{key: value.unsqueeze(0) for key, value in rows.items()}, tasks=["quiz"])
    assert answers[1]["quiz"]["label"] == ["cat", "dog"][int(scores["quiz"][0].argmax())]
    assert set(answers[2]) == {"demo_ner", "demo_sentiment"}


def test_half_a_question_mix_and_resume_equals_the_straight_run(tiny_model_dir, tmp_path, recorded):  # noqa: F811
    steps, finals = recorded
    # a batch of every task at every step: each task type is resumed mid-run
    common = [f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", *SETTINGS, "train.max_steps=8",
              "train.eval_every=4", "train.save_total_limit=2", "train.step_mode=all_tasks",
              question_mix(tmp_path)]
    assert cli_main(["train", *common, f"output_dir={tmp_path / 'straight'}"]) == 0
    straight_steps, straight_final = list(steps), finals[0]
    assert {task for step in straight_steps[4:] for task, _ in step} == set(TASKS)
    steps.clear()
    assert cli_main(["train", *common, f"output_dir={tmp_path / 'resumed'}",
                     f"resume_from={tmp_path / 'straight' / 'state-4'}"]) == 0
    assert steps == straight_steps[4:]
    assert_same_weights(straight_final, finals[1])
