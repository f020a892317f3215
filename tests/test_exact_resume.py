"""Exact resume: N steps straight and N/2 steps + resume to N give the same loss at every step and
the same final weights (CPU, fixed seed, tiny model, dropout on)."""

from __future__ import annotations

import pytest
import torch

from mtl_nlp.cli import main as cli_main
from mtl_nlp.training.step import StepRunner
from mtl_nlp.training.trainer import MultiTaskTrainer


@pytest.fixture
def recorded(monkeypatch):
    """Each training step's (task, loss) pairs and each run's final weights, in call order."""
    steps: list[list[tuple[str, float]]] = []
    finals: list[dict[str, torch.Tensor]] = []
    run_step, train = StepRunner.run, MultiTaskTrainer.train

    def run_and_record(self, batches, step):
        result = run_step(self, batches, step)
        steps.append([(task, float(loss)) for task, loss in result.losses])
        return result

    def train_and_capture(self):
        progress = train(self)
        model = self.accelerator.unwrap_model(self.model)
        finals.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return progress

    monkeypatch.setattr(StepRunner, "run", run_and_record)
    monkeypatch.setattr(MultiTaskTrainer, "train", train_and_capture)
    return steps, finals


def assert_same_weights(straight: dict[str, torch.Tensor], resumed: dict[str, torch.Tensor]) -> None:
    """Every final weight of the resumed run equals the straight run's, bit for bit."""
    assert straight.keys() == resumed.keys()
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


@pytest.mark.parametrize(("step_mode", "shape"), [
    ("one_task", []), ("all_tasks", []),
    ("one_task", ["sharing.adapters.method=lora", "sharing.adapters.layers=1"]),  # per-task adapters
])
def test_half_run_and_resume_equals_the_straight_run(tiny_model_dir, tmp_path, recorded, step_mode, shape):
    steps, finals = recorded
    common = [f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no",
              "train.batch_size=8", "train.lr=1e-3", "train.max_steps=8", "train.eval_every=4",
              f"train.step_mode={step_mode}", "train.save_total_limit=2", "max_train_examples=40", *shape]
    assert cli_main(["train", *common, f"output_dir={tmp_path / 'straight'}"]) == 0
    straight_steps, straight_final = list(steps), finals[0]
    assert len(straight_steps) == 8
    # The straight run kept its step-4 state beside the final one: resume from it elsewhere.
    assert (tmp_path / "straight" / "state-4").is_dir()
    steps.clear()
    assert cli_main(["train", *common, f"output_dir={tmp_path / 'resumed'}",
                     f"resume_from={tmp_path / 'straight' / 'state-4'}"]) == 0
    assert steps == straight_steps[4:]  # the same task, batch and dropout at every step
    assert_same_weights(straight_final, finals[1])


def test_half_run_and_resume_with_a_streamed_task(tiny_model_dir, tmp_path, recorded):
    """A streamed task beside an in-memory one: the resumed run skips to the same place in the
    stream's epoch (5 batches an epoch, so the 8 steps cross epochs of both tasks)."""
    import json

    steps, finals = recorded
    rows = [{"text": f"{'a good' if i % 2 else 'a dull'} film {i}", "label": "pos" if i % 2 else "neg"}
            for i in range(40)]
    train = tmp_path / "reviews.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    reviews = (f"{{name: reviews, type: classification, format: json, streaming: true, "
               f"data_files: {{train: {train}, validation: {train}}}}}")
    common = [f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no",
              "train.batch_size=8", "train.lr=1e-3", "train.max_steps=8", "train.eval_every=4",
              "train.save_total_limit=2", "max_train_examples=40", "max_eval_examples=8",
              f"tasks=[demo_sentiment, {reviews}]"]
    assert cli_main(["train", *common, f"output_dir={tmp_path / 'straight'}"]) == 0
    straight_steps, straight_final = list(steps), finals[0]
    assert {task for step in straight_steps for task, _ in step} == {"demo_sentiment", "reviews"}
    steps.clear()
    assert cli_main(["train", *common, f"output_dir={tmp_path / 'resumed'}",
                     f"resume_from={tmp_path / 'straight' / 'state-4'}"]) == 0
    assert steps == straight_steps[4:]
    assert_same_weights(straight_final, finals[1])


def test_evaluating_more_often_leaves_the_training_steps_as_they_were(tiny_model_dir, tmp_path, recorded):
    """Evaluation draws nothing from the RNG that drives dropout: a run evaluated every 2 steps
    trains through the same task, batch and dropout at every step as one evaluated only at its end."""
    steps, _ = recorded
    common = [f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no",
              "train.batch_size=8", "train.lr=1e-3", "train.max_steps=8", "max_train_examples=40"]
    assert cli_main(["train", *common, "train.eval_every=8", f"output_dir={tmp_path / 'once'}"]) == 0
    evaluated_once = list(steps)
    steps.clear()
    assert cli_main(["train", *common, "train.eval_every=2", f"output_dir={tmp_path / 'often'}"]) == 0
    assert len(evaluated_once) == 8
    assert steps == evaluated_once


def test_half_run_and_resume_with_teachers_equals_the_straight_run(tiny_model_dir, tmp_path, recorded):
    """The gold weight follows the step: a resumed distilled run continues the schedule exactly."""
    steps, finals = recorded
    common = [f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no",
              "train.batch_size=8", "train.lr=1e-3", "max_train_examples=40", "max_eval_examples=8"]
    assert cli_main(["train", *common, "train.max_steps=2", f"output_dir={tmp_path / 'teacher'}"]) == 0
    teachers = [f"distill.teachers.{task}={tmp_path / 'teacher'}" for task in ("demo_ner", "demo_topic")]
    distilled = [*common, *teachers, "train.max_steps=4", "train.eval_every=2", "train.save_total_limit=2"]
    steps.clear()
    finals.clear()
    assert cli_main(["train", *distilled, f"output_dir={tmp_path / 'straight'}"]) == 0
    straight_steps, straight_final = list(steps), finals[0]
    steps.clear()
    assert cli_main(["train", *distilled, f"output_dir={tmp_path / 'resumed'}",
                     f"resume_from={tmp_path / 'straight' / 'state-2'}"]) == 0
    assert len(straight_steps) == 4 and steps == straight_steps[2:]
    assert_same_weights(straight_final, finals[1])
