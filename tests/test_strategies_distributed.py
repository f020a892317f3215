"""Multi-task strategies in a real 2-process (gloo) run: every rank ends with the same weights."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from process_group import run_process_group
from question_mix_data import QUESTION_MIX_TASKS, question_mix

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "workers" / "ddp_train.py"


def torchrun(out: Path, *overrides: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               str(WORKER), str(out), *overrides]
    return run_process_group(command, env=env, cwd=ROOT)


QUESTIONS = "questions"  # an override that stands for the mix of every task type (question_mix)


@pytest.mark.parametrize("overrides", [
    # extractive QA and multiple choice beside a tagger and a classifier
    ("train.step_mode=all_tasks", "weighting.method=pcgrad", "train.grad_accum=2",
     "sharing.private_layers=1", QUESTIONS),
    ("weighting.method=uncertainty", "diagnostics.conflict_every=2",
     "tasks=[{name: demo_ner, layer: 1}, demo_sentiment]", "sharing.freeze_embeddings=true",
     "train.grad_accum=2"),
    # a loss weighting, with accumulation: the other cases cover the launch (with -m slow)
    pytest.param(("train.step_mode=all_tasks", "weighting.method=dwa", "weighting.window=2",
                  "train.grad_accum=2"), marks=pytest.mark.slow),
], ids=["all_tasks-pcgrad-accum-private-every-task-type",
        "one_task-uncertainty-conflicts-ner-on-layer-1-frozen-embeddings", "all_tasks-dwa-accum"])
def test_two_ranks_end_with_identical_weights(tiny_model_dir, tmp_path, overrides):
    launched = [question_mix(tmp_path) if value == QUESTIONS else value for value in overrides]
    questions = ["max_length=32", "stride=4", "max_train_examples=24"] if QUESTIONS in overrides else []
    result = torchrun(tmp_path, f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}",
                      "mixed_precision=no", "train.batch_size=16", "train.lr=1e-3", "train.max_steps=4",
                      *questions, *launched)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    accumulated = 2 if "train.grad_accum=2" in overrides else 1
    assert [len(step) % accumulated for step in ranks[0]["tasks"]] == [0] * 4  # 4 steps recorded
    if QUESTIONS in overrides:  # a round of every task, twice (accumulated), at every step
        assert ranks[0]["tasks"] == [QUESTION_MIX_TASKS * 2] * 4
    assert ranks[0]["tasks"] == ranks[1]["tasks"]  # the same head at every step on both ranks
    assert ranks[0]["state"].keys() == ranks[1]["state"].keys()
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), name
    for name, value in ranks[0]["weighting"].items():
        assert torch.equal(value, ranks[1]["weighting"][name]), name
    if "weighting.method=uncertainty" in overrides:  # the learned log-variances moved, alike
        assert ranks[0]["weighting"]["log_variances"].abs().sum() > 0


def test_a_one_batch_task_trains_on_four_processes(tiny_model_dir, tmp_path):
    # 20 examples: 1 held out for validation, 19 in one training batch, 4 ranks to feed.
    data = tmp_path / "tiny.tsv"
    rows = [f"{'good' if i % 2 else 'bad'} film number {i}\t{'positive' if i % 2 else 'negative'}\n"
            for i in range(20)]
    data.write_text("sentence\tlabel\n" + "".join(rows))
    tiny = (f"{{name: tiny, type: classification, format: tsv, text_column: sentence, "
            f"labels: [negative, positive], data_files: {{train: {data}, test: {data}}}}}")
    result = torchrun(tmp_path, f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}",
                      "mixed_precision=no", "train.batch_size=32", "train.max_steps=3", "cpu_threads=1",
                      f"tasks=[demo_sentiment, {tiny}]", processes=4)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(4)]
    for name, value in ranks[0]["state"].items():
        assert all(torch.equal(value, other["state"][name]) for other in ranks[1:]), name


SHAPES = ["hard", "private", "soft_l2", "layer", "frozen", "distilled", "mixed", "adapters"]


@pytest.fixture(scope="module")
def trained_by_launcher(tiny_model_dir, tmp_path_factory) -> dict[str, dict[str, dict]]:
    """{launcher: {shape: final weights}}: every shape trained by one plain process, by torchrun
    with two processes and (the hard shape) with one; one launch of each for all the shapes."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    worker = str(ROOT / "tests" / "workers" / "ddp_equals_one.py")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node"]
    launchers = {"plain": ([sys.executable], SHAPES), "ddp-2": ([*torchrun, "2"], SHAPES),
                 "ddp-1": ([*torchrun, "1"], ["hard"])}
    weights = {}
    for name, (launcher, shapes) in launchers.items():
        out = tmp_path_factory.mktemp(name)
        command = [*launcher, worker, str(tiny_model_dir), str(out), *shapes]
        result = run_process_group(command, env=env, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-3000:]
        weights[name] = {shape: torch.load(out / f"{shape}.pt") for shape in shapes}
    return weights


@pytest.mark.parametrize("shape", SHAPES)
def test_two_processes_train_the_weights_one_process_trains(trained_by_launcher, shape):
    """Two DDP ranks with a batch each per step against one plain process accumulating both
    batches: equal updates, including the soft L2 pull on the private layers of the task a step
    does not train, and distillation's annealed targets. torchrun with one process (a DDP wrapper
    around one rank) trains them too."""
    plain = trained_by_launcher["plain"][shape]
    launchers = [name for name, shapes in trained_by_launcher.items() if shape in shapes]
    assert launchers == (["plain", "ddp-2", "ddp-1"] if shape == "hard" else ["plain", "ddp-2"])
    for name in launchers:
        weights = trained_by_launcher[name][shape]
        assert weights.keys() == plain.keys()
        for key, value in plain.items():
            torch.testing.assert_close(weights[key], value, rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")


def test_teacher_outputs_change_what_a_step_trains(trained_by_launcher):
    """The distilled shape trains the hard shape's batches with teacher logits: other weights."""
    plain = trained_by_launcher["plain"]
    head = "heads.sentiment.classifier.weight"
    assert not torch.allclose(plain["distilled"][head], plain["hard"][head])


def test_each_task_trains_its_own_adapter_under_ddp(trained_by_launcher):
    """The adapters shape: both tasks' LoRA updates moved from their zero start, alike on 2 ranks."""
    for name in ("plain", "ddp-2"):
        weights = trained_by_launcher[name]["adapters"]
        for task in ("sentiment", "topic"):
            update = weights[f"encoder.encoder.layer.1.attention.self.query.lora_B.{task}.weight"]
            assert update.abs().sum() > 0, (name, task)
