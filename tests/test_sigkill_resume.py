"""A training run killed with SIGKILL at random moments (most of them while it saves: it evaluates,
saves the best checkpoint and a resumable state at every step) always leaves a best checkpoint
that loads and a state that resumes, and the resumed runs finish. Slow: 20+ process starts."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from transformers import BertConfig, BertModel

from mtl_nlp import MultiTaskModel
from mtl_nlp.common.run_files import WRITING, newest_state
from mtl_nlp.modeling.checkpoint_files import PENDING
from mtl_nlp.modeling.model import is_checkpoint

KILLS = 20
MAX_STEPS = 60


def train_command(model_dir, output, cache, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "mtl_nlp.cli", "train", f"model={model_dir}", f"output_dir={output}",
               f"cache_dir={cache}", "mixed_precision=no", "train.batch_size=8", "train.eval_every=1",
               f"train.max_steps={MAX_STEPS}", "max_eval_examples=8", "cpu_threads=1"]
    return command + [f"resume_from={output}"] if resume else command


def saving(output) -> bool:
    """Whether a state or a checkpoint is being written (or was, when the process died)."""
    return (output / WRITING).exists() or (output / PENDING).exists()


def evaluations(log) -> int:
    return log.read_text(errors="replace").count("validation overall")


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory, tiny_tokenizer):
    """A 4-layer BERT of hidden size 256 (3M parameters): its checkpoint and optimizer state take
    long enough to write that kills land inside saves."""
    directory = tmp_path_factory.mktemp("small-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=256, num_hidden_layers=4,
                        num_attention_heads=4, intermediate_size=1024, max_position_embeddings=128)
    BertModel(config).save_pretrained(directory)
    tiny_tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.slow
def test_sigkill_at_random_moments_always_leaves_a_loadable_checkpoint_and_a_resumable_state(
    small_model_dir, tmp_path
):
    # Unbuffered, so the log shows each evaluation as it happens.
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    chance = random.Random(0)
    output, log = tmp_path / "run", tmp_path / "train.log"
    kills = kills_while_saving = finished_runs = launches = 0
    while kills < KILLS:
        launches += 1
        resume = newest_state(output) is not None
        if not resume and output.exists():  # killed before its first state: a fresh run elsewhere
            os.rename(output, tmp_path / f"before-first-state-{launches}")
        with log.open("w") as sink:
            process = subprocess.Popen(train_command(small_model_dir, output, tmp_path / "cache", resume),
                                       stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            # Wait for this launch's first evaluation, then kill at a random moment of what follows
            # (steps, evaluations and saves, one of each per step).
            deadline = time.monotonic() + 180
            while evaluations(log) == 0 and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if launches % 2:  # every other kill aims at a save: a state or checkpoint being written
                while not saving(output) and process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.001)
                time.sleep(chance.uniform(0.0, 0.015))
            else:
                time.sleep(chance.uniform(0.0, 1.0))
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                kills += 1
                kills_while_saving += saving(output)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        if process.returncode == 0:  # the run finished before the kill: start another one
            finished_runs += 1
            assert json.loads((output / "trainer_state.json").read_text())["step"] == MAX_STEPS
            os.rename(output, tmp_path / f"finished-{finished_runs}")
            continue
        assert process.returncode == -signal.SIGKILL, log.read_text()[-3000:]
        # What a user finds after the kill: a checkpoint that loads (its files all from one save,
        # checked against its manifest) and a complete state to resume from.
        assert is_checkpoint(output), log.read_text()[-3000:]
        MultiTaskModel.from_pretrained(output)
        if resume or evaluations(log) >= 2:  # a state was saved after the first evaluation
            assert newest_state(output) is not None
    # The last state resumes and the run ends normally.
    result = subprocess.run(train_command(small_model_dir, output, tmp_path / "cache", resume=True),
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((output / "trainer_state.json").read_text())["step"] == MAX_STEPS
    print(f"{kills} SIGKILLs, {kills_while_saving} of them while a checkpoint or state was being "
          f"saved; {finished_runs} runs finished between kills")
    assert kills == KILLS and kills_while_saving >= KILLS // 4
