"""The recipe end to end through `accelerate launch`, on the demo tasks with a tiny encoder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from process_group import run_process_group

from mtl_nlp.common.errors import MtlNlpError
from mtl_nlp.inference import Predictor

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "cls_ner.py"


def launch(*args: str, processes: int = 1) -> subprocess.CompletedProcess:
    if processes == 1:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    return run_process_group([*command, str(RECIPE), *args], env=env, cwd=ROOT)


def common_args(model_dir: Path, output: Path, cache: Path) -> list[str]:
    return [f"model={model_dir}", f"output_dir={output}", f"cache_dir={cache}", "mixed_precision=no",
            "train.batch_size=16", "train.lr=1e-3"]


def test_recipe_trains_saves_and_reloads(tiny_model_dir, tmp_path, recipe):
    output = tmp_path / "run"
    args = common_args(tiny_model_dir, output, tmp_path / "cache")
    result = launch(*args, "train.max_steps=6", "train.eval_every=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step 3: validation overall" in result.stdout and "step 6: validation overall" in result.stdout

    metrics = json.loads((output / "metrics.json").read_text())
    assert set(metrics) == {"demo_ner", "demo_sentiment", "demo_topic", "overall", "main_metrics", "reports",
                            "windows"}
    # The demo sentences all fit in max_length: none is scored as several windows.
    assert metrics["windows"]["demo_ner"]["windowed_examples"] == 0
    assert metrics["windows"]["demo_ner"]["examples"] > 0
    assert set(metrics["demo_ner"]) == {"precision", "recall", "f1"}
    assert set(metrics["demo_topic"]) == {"accuracy", "macro_f1", "matthews_correlation"}
    # Per-class reports: every label of a classification task, every entity type of the tagger.
    reports = metrics["reports"]
    assert list(reports["demo_topic"]) == ["Business", "Sci/Tech", "Sports", "World"]
    assert set(reports["demo_ner"]) <= {"PER", "ORG", "LOC", "MISC"}
    assert set(reports["demo_sentiment"]["negative"]) == {"precision", "recall", "f1", "support"}
    # Accuracy = correct / all = sum over labels of recall x support / sum of supports.
    rows = reports["demo_topic"].values()
    correct = sum(row["recall"] * row["support"] for row in rows)
    assert correct / sum(row["support"] for row in rows) == pytest.approx(metrics["demo_topic"]["accuracy"])
    assert "demo_topic:" in result.stdout and "precision  recall      f1  support" in result.stdout
    # One labelled table of the test scores, where the checkpoint is, and what to run next.
    best = json.loads((output / "trainer_state.json").read_text())
    assert (f"test scores of the best checkpoint (step {best['best_step']}, validation overall "
            f"{best['best_validation_overall']:.4f}):\n| task ") in result.stdout
    assert f"| demo_topic     | accuracy    | {metrics['demo_topic']['accuracy']:.4f} |" in result.stdout
    assert f"checkpoint: {output} (metrics.json: these scores;" in result.stdout
    assert f'echo "Some text." | mtl-nlp predict {output}' in result.stdout
    assert "step 3: validation overall" in result.stdout and "demo_ner f1 " in result.stdout
    mean = (metrics["demo_ner"]["f1"] + metrics["demo_sentiment"]["accuracy"]
            + metrics["demo_topic"]["accuracy"]) / 3
    assert metrics["overall"]["score"] == pytest.approx(mean)
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["step"] == 6 and [h["step"] for h in state["history"]] == [3, 6]

    predictor = Predictor.from_pretrained(output, mixed_precision="no")
    assert predictor.tasks == ["demo_ner", "demo_sentiment", "demo_topic"]
    answer = predictor.predict("Anna Schmidt visited Berlin .")
    assert set(answer) == {"demo_ner", "demo_sentiment", "demo_topic"}
    assert answer["demo_topic"]["label"] in ("Business", "Sci/Tech", "Sports", "World")

    # What follows runs the recipe in this process: the launcher's path is the one above, and each
    # launch costs a new interpreter's imports.
    # A fresh run over a trained checkpoint is refused; nothing is overwritten.
    before = (output / "heads.safetensors").read_bytes()
    with pytest.raises(MtlNlpError, match=f"output_dir {output} already holds a checkpoint"):
        recipe.main([*args, "train.max_steps=2"])
    assert (output / "heads.safetensors").read_bytes() == before

    # Resuming continues from the saved state to the new step budget.
    recipe.main([*args, "train.max_steps=8", f"resume_from={output}"])
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["step"] == 8 and [h["step"] for h in state["history"]] == [3, 6, 8]

    # Nothing but the folder: the config of the run that wrote the state comes back (model, tasks,
    # cache, lr, and eval_every=3, which every resumed run took over from the first one).
    recipe.main(["train.max_steps=10", f"resume_from={output}"])
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["step"] == 10 and [h["step"] for h in state["history"]] == [3, 6, 8, 9, 10]
    assert json.loads((output / "state" / "run_config.json").read_text())["train"]["max_steps"] == 10

    # Resuming a finished run into a new folder brings its best checkpoint along.
    elsewhere = tmp_path / "continued"
    recipe.main([*common_args(tiny_model_dir, elsewhere, tmp_path / "cache"), "train.max_steps=10",
                 f"resume_from={output}/state"])
    assert json.loads((elsewhere / "trainer_state.json").read_text())["step"] == 10
    assert Predictor.from_pretrained(elsewhere, mixed_precision="no").tasks == predictor.tasks


def test_recipe_rejects_a_config_typo_before_training(tiny_model_dir, tmp_path, recipe):
    # (tests/test_cli.py checks that the recipe prints such an error as one line and exits 2)
    with pytest.raises(MtlNlpError, match="unknown config key 'train.lrr'"):
        recipe.main([f"model={tiny_model_dir}", f"output_dir={tmp_path / 'x'}", "train.lrr=1"])
    assert not (tmp_path / "x").exists()


def test_two_processes_train_the_same_task_sequence(tiny_model_dir, tmp_path):
    output = tmp_path / "ddp"
    result = launch(*common_args(tiny_model_dir, output, tmp_path / "cache"), "train.max_steps=4",
                    processes=2)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["num_processes"] == 2 and state["step"] == 4
    assert Predictor.from_pretrained(output, mixed_precision="no").predict("anna")["demo_sentiment"]
