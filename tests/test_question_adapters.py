"""Per-task LoRA adapters on the question task types: an extractive QA and a multiple-choice task
train their own adapters beside a classifier, reload, and export as standard peft adapters that
transformers' question-answering and multiple-choice models answer with."""

from __future__ import annotations

import json

import pytest
import torch
from test_extractive_qa import FACTS, write_facts
from test_multiple_choice import write_questions
from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering

from mtl_nlp import MultiTaskModel
from mtl_nlp.cli import main as cli_main
from mtl_nlp.inference import Predictor
from mtl_nlp.publish.export import export_task

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def question_adapter_run(tmp_path_factory, tiny_model_dir):
    """QA, multiple choice and a classifier, each with a rank-2 adapter on every layer."""
    folder = tmp_path_factory.mktemp("question-adapters")
    facts, quiz = json.dumps(write_facts(folder)), json.dumps(write_questions(folder, "plain"))
    tasks = (f"tasks=[{{name: facts, type: extractive_qa, format: json, data_files: {facts}}}, "
             f"{{name: quiz, type: multiple_choice, format: json, choices_column: options, "
             f"label_column: answer, data_files: {quiz}}}, demo_topic]")
    out = folder / "run"
    assert cli_main(["train", f"model={tiny_model_dir}", f"cache_dir={folder / 'cache'}",
                     "mixed_precision=no", "train.batch_size=4", "train.lr=1e-2", "train.max_steps=12",
                     "max_length=32", "stride=4", "max_eval_examples=8", "max_train_examples=40",
                     f"output_dir={out}", "sharing.adapters.method=lora", "sharing.adapters.r=2",
                     tasks]) == 0
    return out


def test_question_tasks_train_their_own_adapters_and_reload(question_adapter_run):
    model = MultiTaskModel.from_pretrained(question_adapter_run)
    assert sorted(model.sharing.adapter_of) == ["demo_topic", "facts", "quiz"]
    assert len(set(model.sharing.adapter_of.values())) == 3  # one adapter per task
    metrics = json.loads((question_adapter_run / "metrics.json").read_text())
    assert set(metrics["facts"]) == {"exact_match", "f1"} and set(metrics["quiz"]) == {"accuracy"}
    predictor = Predictor.from_pretrained(question_adapter_run, mixed_precision="no")
    answer = predictor.predict({"question": "where does anna live ?", "context": FACTS[0][0]})["facts"]
    assert FACTS[0][0][answer["start"]:answer["end"]] == answer["answer"]
    chosen = predictor.predict({"question": "what barks ?", "choices": ["cat", "dog"]})["quiz"]
    assert 0.5 <= chosen["score"] <= 1.0  # the more likely of two options


@pytest.mark.parametrize("task", ["facts", "quiz"])
def test_the_exported_adapter_answers_as_the_checkpoint_does(question_adapter_run, tiny_model_dir,
                                                               tiny_tokenizer, tmp_path, task):
    from peft import PeftModel

    model = MultiTaskModel.from_pretrained(question_adapter_run).eval()
    rows = tiny_tokenizer(["where does anna live ?"] * 2 + ["what barks ?"] * 2,
                          [FACTS[0][0], "a garden", "cat", "dog"], padding=True, return_tensors="pt")
    if task == "quiz":  # two questions of two options each
        inputs = {key: value.view(2, 2, -1) for key, value in rows.items()}
        auto = AutoModelForMultipleChoice
    else:
        inputs, auto = dict(rows), AutoModelForQuestionAnswering
    with torch.no_grad():
        expected = model.forward_all(**inputs, tasks=[task])[task]
    folder = export_task(question_adapter_run, task, tmp_path / "adapter")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)
    usage = f'base = {auto.__name__}.from_pretrained("{tiny_model_dir}")\n'  # no labels: options or spans
    assert usage in (folder / "README.md").read_text()
    with torch.no_grad():
        answered = PeftModel.from_pretrained(auto.from_pretrained(tiny_model_dir), folder).eval()(**inputs)
        merged = auto.from_pretrained(export_task(question_adapter_run, task, tmp_path / "merged",
                                                  merge=True)).eval()(**inputs)
    if task == "quiz":
        torch.testing.assert_close(answered.logits, expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(merged.logits, expected, rtol=1e-4, atol=1e-4)
    else:  # the head's start and end logits, one pair per token
        for outputs in (answered, merged):
            both = torch.stack([outputs.start_logits, outputs.end_logits], dim=-1)
            torch.testing.assert_close(both, expected, rtol=1e-4, atol=1e-4)
