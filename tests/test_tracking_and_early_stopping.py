"""`tracker: tensorboard` logs a run's curves into output_dir/logs; train.early_stopping_patience
ends a run that stopped improving, keeping its best checkpoint; train.eval_every sets when a run
evaluates."""

from __future__ import annotations

import json

import pytest

from mtl_nlp.cli import main as cli_main
from mtl_nlp.config import ConfigError, load_config


def train(tiny_model_dir, output, *overrides: str) -> int:
    return cli_main(["train", f"model={tiny_model_dir}", f"output_dir={output}",
                     f"cache_dir={output.parent / 'cache'}", "mixed_precision=no", "train.batch_size=16",
                     *overrides])


def test_tensorboard_tracker_logs_losses_lr_metrics_and_task_counts(tiny_model_dir, tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    output = tmp_path / "run"
    assert train(tiny_model_dir, output, "tracker=tensorboard", "train.max_steps=4", "train.eval_every=2",
                 "train.log_every=1", "train.lr=1e-3") == 0
    # logs/<run name>/ holds the scalars; TensorBoard puts the config (hparams) in a subfolder.
    events = list((output / "logs" / "run").glob("events.out.tfevents.*"))
    assert len(events) == 1
    reader = event_accumulator.EventAccumulator(str(events[0].parent))
    reader.Reload()
    scalars = set(reader.Tags()["scalars"])
    tasks = ["demo_ner", "demo_sentiment", "demo_topic"]
    assert {"train/lr", "validation/overall", "validation/demo_ner/f1", "validation/demo_topic/accuracy",
            *(f"task_batches/{task}" for task in tasks)} <= scalars
    assert any(tag.startswith("train/loss/") for tag in scalars)
    assert [event.step for event in reader.Scalars("validation/overall")] == [2, 4]
    state = json.loads((output / "trainer_state.json").read_text())
    drawn = {task: reader.Scalars(f"task_batches/{task}")[0].value for task in tasks}
    assert drawn == {task: float(state["task_batches"].get(task, 0)) for task in tasks}
    overall = [entry["overall"] for entry in state["history"]]
    assert [event.value for event in reader.Scalars("validation/overall")] == pytest.approx(overall)


def test_no_tracker_files_unless_asked(tiny_model_dir, tmp_path):
    output = tmp_path / "run"
    assert train(tiny_model_dir, output, "train.max_steps=2") == 0
    assert not (output / "logs").exists()


def test_early_stopping_ends_the_run_after_patience_evaluations(tiny_model_dir, tmp_path):
    output = tmp_path / "run"
    # A learning rate too small to change any prediction: the first evaluation stays the best.
    assert train(tiny_model_dir, output, "train.max_steps=40", "train.eval_every=1",
                 "train.early_stopping_patience=2", "train.lr=1e-12") == 0
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["best_step"] == 1
    assert state["step"] == 3 and state["stopped_early_at"] == 3
    assert [entry["step"] for entry in state["history"]] == [1, 2, 3]
    assert (output / "metrics.json").is_file()  # the best checkpoint is still scored on test


def test_tracker_and_patience_errors_name_the_fix():
    with pytest.raises(ConfigError, match="tracker 'tensorbord' is not one of: aim, comet_ml"):
        from mtl_nlp.training.setup import check_trackers

        check_trackers(["tensorbord"])
    with pytest.raises(ConfigError, match="counts evaluations: set train.eval_every too"):
        load_config(overrides=["train.early_stopping_patience=3"])
    assert load_config(overrides=["tracker=tensorboard,wandb"]).tracker == ["tensorboard", "wandb"]


def test_eval_every_epoch_evaluates_once_an_epoch(tiny_model_dir, tmp_path):
    output = tmp_path / "run"
    # 3 demo tasks x 32 examples in batches of 16: 6 batches an epoch
    assert train(tiny_model_dir, output, "train.epochs=2", "max_train_examples=32", "max_eval_examples=16",
                 "train.eval_every=epoch") == 0
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["step"] == 12
    assert [entry["step"] for entry in state["history"]] == [6, 12]
    saved = json.loads((output / "mtl_nlp.json").read_text())["run_config"]
    assert saved["train"]["eval_every"] == "epoch"  # the run config keeps what was asked


def test_eval_every_takes_steps_or_epoch_only():
    assert load_config(overrides=["train.eval_every=epoch"]).train.eval_every == "epoch"
    assert load_config(overrides=["train.eval_every=50"]).train.eval_every == 50
    with pytest.raises(ConfigError, match="eval_every must be a number of steps or 'epoch', got 'weekly'"):
        load_config(overrides=["train.eval_every=weekly"])
