import json
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
    (run / "state").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (run / "mtl_nlp.json").write_text("{}")
    check_output_dir(RunConfig(output_dir=str(tmp_path / "fresh")))
    check_output_dir(RunConfig(output_dir=str(run), resume_from=str(run)))
    check_output_dir(RunConfig(output_dir=str(run), resume_from=str(run / "state")))
    with pytest.raises(ConfigError, match=f"output_dir {run} already holds a checkpoint; choose another"):
        check_output_dir(RunConfig(output_dir=str(run)))
    with pytest.raises(ConfigError, match=f"output_dir {run} already holds a checkpoint of another run"):
        check_output_dir(RunConfig(output_dir=str(run), resume_from=str(tmp_path / "other")))


def test_resume_from_a_missing_folder_says_so(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "mtl_nlp.json").write_text("{}")
    with pytest.raises(ConfigError, match=f"resume_from: {tmp_path / 'gone'} does not exist"):
        check_output_dir(RunConfig(output_dir=str(run), resume_from=str(tmp_path / "gone")))


def test_resume_from_alone_starts_from_the_saved_run_config(tmp_path):
    from mtl_nlp.config import load_run_config

    run = tmp_path / "run"
    (run / "state").mkdir(parents=True)
    saved = RunConfig(output_dir=str(run), tasks=["demo_ner"], max_length=48)
    saved.train.lr = 1e-3
    (run / "mtl_nlp.json").write_text(json.dumps({"run_config": saved.to_dict()}))
    for folder in (run, run / "state"):
        config = load_run_config(None, [f"resume_from={folder}", "train.max_steps=9"])
        assert (config.tasks, config.max_length, config.train.lr) == (["demo_ner"], 48, 1e-3)
        assert config.train.max_steps == 9 and config.resume_from == str(folder)
    assert load_run_config(None, ["max_length=64"]).max_length == 64  # no resume: the defaults
    # The state's own record wins over the checkpoint's (a later run may have written the state).
    (run / "state" / "run_config.json").write_text(json.dumps({**saved.to_dict(), "max_length": 96}))
    (run / "state" / "complete.json").write_text('{"step": 4}')
    assert load_run_config(None, [f"resume_from={run}"]).max_length == 96
    with pytest.raises(ConfigError, match="resume_from: .*nowhere does not exist"):
        load_run_config(None, [f"resume_from={tmp_path / 'nowhere'}"])


def test_output_dir_holding_a_model_it_did_not_write_is_refused(tmp_path, tiny_model_dir):
    expected = r"holds files mtl_nlp did not write \(config.json, model.safetensors"
    with pytest.raises(ConfigError, match=expected):
        check_output_dir(RunConfig(output_dir=str(tiny_model_dir)))
    (tmp_path / "logs").mkdir()  # a folder with other things is fine
    check_output_dir(RunConfig(output_dir=str(tmp_path)))


def test_paths_expand_the_home_folder(monkeypatch, tmp_path):
    from mtl_nlp.config import load_config

    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config(overrides=["output_dir=~/runs/a", "data_dir=~/data"])
    assert (config.output_dir, config.data_dir) == (str(tmp_path / "runs" / "a"), str(tmp_path / "data"))
