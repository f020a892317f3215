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


@pytest.mark.parametrize("step_mode", ["one_task", "all_tasks"])
def test_half_run_and_resume_equals_the_straight_run(tiny_model_dir, tmp_path, recorded, step_mode):
    steps, finals = recorded
    common = [f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no",
              "train.batch_size=8", "train.lr=1e-3", "train.max_steps=8", "train.eval_every=4",
              f"train.step_mode={step_mode}", "train.save_total_limit=2", "max_train_examples=40"]
    assert cli_main(["train", *common, f"output_dir={tmp_path / 'straight'}"]) == 0
    straight_steps, straight_final = list(steps), finals[0]
    assert len(straight_steps) == 8
    # The straight run kept its step-4 state beside the final one: resume from it elsewhere.
    assert (tmp_path / "straight" / "state-4").is_dir()
    steps.clear()
    assert cli_main(["train", *common, f"output_dir={tmp_path / 'resumed'}",
                     f"resume_from={tmp_path / 'straight' / 'state-4'}"]) == 0
    assert steps == straight_steps[4:]  # the same task, batch and dropout at every step
    for name, value in straight_final.items():
        assert torch.equal(value, finals[1][name]), name
