import math

import pytest
import torch

from mtl_nlp.config import ConfigError, RunConfig
from mtl_nlp.training.progress import RunningLoss, TrainingProgress
from mtl_nlp.training.setup import check_output_dir


def test_running_loss_is_an_exponential_average_per_task():
    running = RunningLoss(decay=0.9)
    running.update("ner", torch.tensor(1.0))
    running.update("cls", torch.tensor(0.5))
    running.update("ner", torch.tensor(2.0))
    assert running.postfix() == {"cls": "0.500", "ner": "1.100"}
    running.update("ner", torch.tensor(1.1))
    assert running.postfix()["ner"] == "1.100" and running.pending == []


def test_training_progress_round_trips_through_state_dict():
    progress = TrainingProgress(step=7, best_score=0.5, best_step=5, history=[{"step": 5}])
    restored = TrainingProgress()
    restored.load_state_dict(progress.state_dict())
    assert restored == progress
    assert TrainingProgress().best_score == -math.inf


def test_output_dir_with_a_checkpoint_is_only_reused_by_resuming_that_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "mtl_nlp.json").write_text("{}")
    check_output_dir(RunConfig(output_dir=str(tmp_path / "fresh")))
    check_output_dir(RunConfig(output_dir=str(run), resume_from=str(run)))
    check_output_dir(RunConfig(output_dir=str(run), resume_from=str(run / "state")))
    with pytest.raises(ConfigError, match=f"output_dir {run} already holds a checkpoint; choose another"):
        check_output_dir(RunConfig(output_dir=str(run)))
    with pytest.raises(ConfigError, match=f"output_dir {run} already holds a checkpoint of another run"):
        check_output_dir(RunConfig(output_dir=str(run), resume_from=str(tmp_path / "other")))
