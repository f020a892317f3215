"""The recipe end to end with the multi-task strategies, in this process (tiny encoder, CPU)."""

import json
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from mtl_nlp.inference import Predictor

ROOT = Path(__file__).resolve().parent.parent


def run(recipe, model_dir, output, cache, *overrides, precision="no"):
    AcceleratorState._reset_state(reset_partial_state=True)
    return recipe.main([f"model={model_dir}", f"output_dir={output}", f"cache_dir={cache}",
                        f"mixed_precision={precision}", "train.batch_size=16", "train.lr=1e-3", *overrides])


def saved_weighting(output: Path) -> dict:
    """The loss weighting's state from the resumable state folder (the one registered object:
    tensors only, so it loads with weights_only)."""
    return torch.load(output / "state" / "custom_checkpoint_0.pkl", weights_only=True)


def test_resume_restores_learned_uncertainty_weights(recipe, tiny_model_dir, tmp_path):
    output = tmp_path / "run"
    run(recipe, tiny_model_dir, output, tmp_path / "cache", "train.max_steps=4",
        "weighting.method=uncertainty", "weighting.lr=0.1", "sampling.strategy=round_robin")
    at_four = saved_weighting(output)["log_variances"]
    assert at_four.abs().min() > 0  # every task's log-variance moved
    state = json.loads((output / "trainer_state.json").read_text())
    expected = dict(zip(state["weighting"]["weights"], torch.exp(-at_four).tolist()))
    assert state["weighting"]["weights"] == pytest.approx(expected)

    # Resuming with no step left restores the weights and reports them unchanged...
    run(recipe, tiny_model_dir, output, tmp_path / "cache", "train.max_steps=4",
        "weighting.method=uncertainty", "weighting.lr=0.1", "sampling.strategy=round_robin",
        f"resume_from={output}")
    assert json.loads((output / "trainer_state.json").read_text())["weighting"]["weights"] == pytest.approx(
        expected)
    # ... and training on continues from them.
    run(recipe, tiny_model_dir, output, tmp_path / "cache", "train.max_steps=6",
        "weighting.method=uncertainty", "weighting.lr=0.1", "sampling.strategy=round_robin",
        f"resume_from={output}")
    at_six = saved_weighting(output)["log_variances"]
    assert not torch.equal(at_six, at_four)
    assert (at_six - at_four).abs().max() < 0.25  # two more Adam steps of lr 0.1, not a restart


def test_every_lever_at_once_in_bf16_saves_a_checkpoint_that_reloads(recipe, tiny_model_dir, tmp_path):
    output = tmp_path / "bf16"
    tasks = ("tasks=[demo_ner, demo_sentiment, demo_topic]",)
    metrics = run(recipe, tiny_model_dir, output, tmp_path / "cache", *tasks, "train.max_steps=4",
                  "train.step_mode=all_tasks", "weighting.method=cagrad", "sharing.private_layers=1",
                  "sharing.soft_l2=0.01", "sharing.freeze_embeddings=true", "diagnostics.conflict_every=2",
                  "train.grad_accum=2", precision="bf16")
    assert set(metrics) == {"demo_ner", "demo_sentiment", "demo_topic", "overall", "main_metrics", "reports",
                            "windows"}
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["task_batches"] == {"demo_ner": 8, "demo_sentiment": 8, "demo_topic": 8}
    assert [entry["step"] for entry in state["loss_history"]] == [4]
    conflicts = json.loads((output / "conflicts.json").read_text())
    assert [record["step"] for record in conflicts["records"]] == [2, 4]
    assert conflicts["tasks"] == ["demo_ner", "demo_sentiment", "demo_topic"]
    for name in ("curves.png", "conflicts.png", "private_layers.safetensors"):
        assert (output / name).stat().st_size > 0
    saved = json.loads((output / "mtl_nlp.json").read_text())
    assert saved["sharing"]["private_layers"] == 1 and saved["sharing"]["num_layers"] == 2
    assert set(k.split(".")[0] for k in load_file(output / "private_layers.safetensors")) == {
        "demo_ner", "demo_sentiment", "demo_topic"}
    answer = Predictor.from_pretrained(output, mixed_precision="no").predict("anna visited berlin .")
    assert set(answer) == {"demo_ner", "demo_sentiment", "demo_topic"}


def test_hierarchical_head_with_round_robin_sampling(recipe, tiny_model_dir, tmp_path):
    output = tmp_path / "layers"
    tasks = "tasks=[{name: ner_low, type: token_classification, layer: 1, format: conll, data_files: " \
            f"{{train: {ROOT}/mtl_nlp/tasks/demo_data/demo_ner/train.txt, " \
            f"validation: {ROOT}/mtl_nlp/tasks/demo_data/demo_ner/validation.txt}}}}, demo_sentiment]"
    run(recipe, tiny_model_dir, output, tmp_path / "cache", tasks, "train.max_steps=4",
        "sampling.strategy=round_robin")
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["task_batches"] == {"ner_low": 2, "demo_sentiment": 2}
    heads = {task["name"]: task for task in json.loads((output / "mtl_nlp.json").read_text())["tasks"]}
    assert heads["ner_low"]["layer"] == 1 and heads["demo_sentiment"]["layer"] is None
