"""Resumable states: written aside, marked complete last, switched in by rename; resuming picks the
newest complete state whatever moment a crash hit."""

import json
import shutil

import pytest
import torch
from accelerate import Accelerator

from mtl_nlp.common.run_files import COMPLETE, newest_state, state_step
from mtl_nlp.training.state_files import save_state


@pytest.fixture(scope="module")
def accelerator():
    accelerator = Accelerator(cpu=True)
    accelerator.register_for_checkpointing(torch.nn.Linear(2, 2))
    return accelerator


def folders(directory):
    return sorted(path.name for path in directory.iterdir())


@pytest.mark.parametrize("keep, expected", [
    (1, ["state"]), (2, ["state", "state-20"]), (3, ["state", "state-10", "state-20"]), (0, []),
])
def test_save_total_limit_keeps_that_many_complete_states(accelerator, tmp_path, keep, expected):
    for step in (10, 20, 30):
        save_state(accelerator, tmp_path, step, keep, {"run_config.json": {"seed": step}})
    assert folders(tmp_path) == expected
    if keep:
        assert state_step(tmp_path / "state") == 30
        assert json.loads((tmp_path / "state" / "run_config.json").read_text()) == {"seed": 30}
        assert newest_state(tmp_path) == tmp_path / "state"


def test_a_state_cut_off_mid_write_is_ignored_and_replaced(accelerator, tmp_path):
    save_state(accelerator, tmp_path, 10, 1)
    # A crash while writing step 20: its folder has files but no completion mark.
    shutil.copytree(tmp_path / "state", tmp_path / "state.new")
    (tmp_path / "state.new" / COMPLETE).unlink()
    assert newest_state(tmp_path) == tmp_path / "state"
    save_state(accelerator, tmp_path, 20, 1)
    assert folders(tmp_path) == ["state"] and state_step(tmp_path / "state") == 20


def test_a_crash_between_marking_and_switching_resumes_the_newer_state(accelerator, tmp_path):
    save_state(accelerator, tmp_path, 10, 1)
    shutil.copytree(tmp_path / "state", tmp_path / "state.new")
    (tmp_path / "state.new" / COMPLETE).write_text('{"step": 20}')  # complete, not yet renamed
    assert newest_state(tmp_path) == tmp_path / "state.new"
    # Mid-switch: the old state already renamed away, the new one not yet in place.
    (tmp_path / "state").rename(tmp_path / "state-10")
    assert newest_state(tmp_path) == tmp_path / "state.new"
    shutil.rmtree(tmp_path / "state.new")
    assert newest_state(tmp_path) == tmp_path / "state-10"


def test_newest_state_of_a_state_folder_is_itself_and_none_without_one(accelerator, tmp_path):
    save_state(accelerator, tmp_path, 5, 1)
    assert newest_state(tmp_path / "state") == tmp_path / "state"
    assert newest_state(tmp_path / "missing") is None
    (tmp_path / "state" / COMPLETE).write_text("{not json")
    assert newest_state(tmp_path) is None


def test_a_resumed_run_never_overwrites_a_better_checkpoint_on_disk(tiny_model_dir, tmp_path):
    from mtl_nlp.cli import main as cli_main

    output = tmp_path / "run"
    common = [f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no",
              "train.batch_size=16", "train.lr=1e-3", "train.eval_every=3"]
    assert cli_main(["train", *common, f"output_dir={output}", "train.max_steps=6"]) == 0
    saved = json.loads((output / "mtl_nlp.json").read_text())
    assert saved["selection"]["step"] in (3, 6)
    # The toolkit's own state is JSON; the pickles left are Accelerate's RNG states and the loss
    # weighting's tensors (README: which files must come from a trusted source).
    toolkit = json.loads((output / "state" / "trainer_progress.json").read_text())
    assert toolkit["progress"]["step"] == 6 and set(toolkit["loader"]) == {"sampler", "epochs", "positions",
                                                                           "drawn"}
    assert sorted(path.name for path in (output / "state").glob("*.pkl")) == [
        "custom_checkpoint_0.pkl", "random_states_0.pkl"]
    # As after a crash between saving a better model and saving the state: the checkpoint on
    # disk scored higher than the state knows.
    saved["selection"] = {"step": 6, "validation_overall": 2.0}
    (output / "mtl_nlp.json").write_text(json.dumps(saved))
    heads = (output / "heads.safetensors").read_bytes()
    assert cli_main(["train", f"resume_from={output}", "train.max_steps=9"]) == 0
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["best_validation_overall"] == 2.0 and state["best_step"] == 6
    assert (output / "heads.safetensors").read_bytes() == heads


def test_sigterm_saves_a_resumable_state_and_exits_143(tiny_model_dir, tmp_path):
    import os
    import re
    import select
    import signal
    import subprocess
    import sys
    import time

    from mtl_nlp.cli import main as cli_main

    output = tmp_path / "run"
    command = [sys.executable, "-m", "mtl_nlp.cli", "train", f"model={tiny_model_dir}",
               f"output_dir={output}", f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no",
               "train.batch_size=8", "train.max_steps=100000", "cpu_threads=1"]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                               start_new_session=True)
    seen, deadline = b"", time.monotonic() + 180
    try:
        # Wait until the progress bar shows a few steps done, then pre-empt.
        while time.monotonic() < deadline:
            if select.select([process.stderr], [], [], 1.0)[0]:
                seen += os.read(process.stderr.fileno(), 65536)
            steps = [int(n) for n in re.findall(rb"\| *(\d+)/100000", seen)]
            if steps and max(steps) >= 3:
                break
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert code == 128 + signal.SIGTERM
    stopped_at = state_step(output / "state")
    assert stopped_at is not None and stopped_at >= 3
    progress = json.loads((output / "state" / "trainer_progress.json").read_text())["progress"]
    assert progress["step"] == stopped_at
    # The saved state resumes with nothing but the folder.
    assert cli_main(["train", f"resume_from={output}", f"train.max_steps={stopped_at + 2}"]) == 0
    assert json.loads((output / "trainer_state.json").read_text())["step"] == stopped_at + 2
