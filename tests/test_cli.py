"""`mtl-nlp`: every command run for real on a tiny model, their help, and one-line user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from process_group import run_process_group
from transformers import pipeline

from mtl_nlp import __version__
from mtl_nlp.cli import build_parser
from mtl_nlp.cli import main as cli_main
from mtl_nlp.inference import Predictor

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["train", "finetune", "distill", "evaluate", "predict", "export", "export-onnx", "push", "serve",
            "tasks", "compare", "affinity"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir) -> Path:
    """A demo run through `mtl-nlp train` whose sentence heads export (`pooling: pooler`)."""
    base = tmp_path_factory.mktemp("cli")
    config = base / "run.yaml"
    config.write_text(
        "tasks: [demo_ner, {name: demo_sentiment, pooling: pooler}, {name: demo_topic, pooling: pooler}]\n"
    )
    output = base / "run"
    code = cli_main(["train", "--config", str(config), f"model={tiny_model_dir}", f"output_dir={output}",
                     f"cache_dir={base / 'cache'}", "mixed_precision=no", "train.batch_size=16",
                     "train.lr=1e-3", "train.max_steps=6", "train.eval_every=3"])
    assert code == 0
    return output


def test_train_writes_checkpoint_metrics_and_a_model_card(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics) == {"demo_ner", "demo_sentiment", "demo_topic", "overall", "main_metrics", "reports",
                            "windows"}
    card = ModelCard.load(trained / "README.md")
    assert card.data.library_name == "mtl-nlp"
    assert set(card.data.tags) >= {"mtl-nlp", "multi-task", "token-classification", "text-classification"}
    results = {result.dataset_name: result for result in card.data.eval_results}
    assert results["demo_ner"].metric_type == "f1"
    assert results["demo_ner"].metric_value == round(metrics["demo_ner"]["f1"], 4)
    assert results["demo_topic"].dataset_split == "test"
    assert "Predictor.from_pretrained" in card.text and "## Training configuration" in card.text
    assert "local files: demo_ner/ (train.txt, validation.txt, test.txt)" in card.text


def test_evaluate_scores_the_checkpoint_with_its_saved_config(trained, capsys):
    assert cli_main(["evaluate", str(trained)]) == 0
    evaluation = json.loads((trained / "evaluation.json").read_text())
    assert evaluation == json.loads((trained / "metrics.json").read_text())
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert lines[0] == f"scores of {trained} on each task's test split (validation where there is none):"
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[1:6]]
    assert cells[0] == ["task", "main metric", "score", "other metrics"]
    for row, (task, main) in zip(cells[2:], [("demo_ner", "f1"), ("demo_sentiment", "accuracy"),
                                            ("demo_topic", "accuracy")]):
        others = ", ".join(f"{name} {value:.4f}" for name, value in evaluation[task].items() if name != main)
        assert row == [task, main, f"{evaluation[task][main]:.4f}", others]
    assert lines[6] == f"overall (mean main metric): {evaluation['overall']['score']:.4f}"
    target = trained / "evaluation.json"
    assert printed.err.endswith(f"metrics (with per-class reports) written to {target}\n")
    assert cli_main(["evaluate", str(trained), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == evaluation


def test_evaluate_takes_overrides_and_an_output_file(trained, tmp_path):
    target = tmp_path / "scores.json"
    assert cli_main(["evaluate", str(trained), "max_eval_examples=5", "--output", str(target)]) == 0
    scores = json.loads(target.read_text())
    assert set(scores) == {"demo_ner", "demo_sentiment", "demo_topic", "overall", "main_metrics", "reports",
                            "windows"}


def test_predict_streams_one_json_line_per_input_line(trained, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("Anna Schmidt visited Berlin .\n\nThe team won the final .\n")
    target = tmp_path / "out.jsonl"
    assert cli_main(["predict", str(trained), str(source), "--output", str(target), "--max-length", "8",
                     "--tasks", "demo_sentiment,demo_topic", "--precision", "no"]) == 0
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    predictor = Predictor.from_pretrained(trained, mixed_precision="no", max_length=8)
    expected = predictor.predict(["Anna Schmidt visited Berlin .", "", "The team won the final ."],
                                 tasks=["demo_sentiment", "demo_topic"])
    assert [set(line) for line in lines] == [{"demo_sentiment", "demo_topic"}] * 3
    # the blank line keeps its place and gets no confident label: None for every task
    assert lines[1] == expected[1] == {"demo_sentiment": None, "demo_topic": None}
    assert [line["demo_topic"]["label"] for line in (lines[0], lines[2])] == [
        answer["demo_topic"]["label"] for answer in (expected[0], expected[2])]


def test_predict_reads_a_tab_as_text_when_no_task_takes_pairs(trained, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("Anna Schmidt\tvisited Berlin .\n")
    target = tmp_path / "out.jsonl"
    assert cli_main(["predict", str(trained), str(source), "--output", str(target), "--max-length", "8",
                     "--tasks", "demo_topic", "--precision", "no"]) == 0
    predictor = Predictor.from_pretrained(trained, mixed_precision="no", max_length=8)
    expected = predictor.predict("Anna Schmidt\tvisited Berlin .", tasks="demo_topic")  # one name
    assert json.loads(target.read_text()) == json.loads(json.dumps(expected))


def test_predict_names_an_unknown_task_before_loading_weights(trained, monkeypatch, capsys):
    from mtl_nlp.modeling.model import MultiTaskModel

    def refuse(*args, **kwargs):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(MultiTaskModel, "load_checked", refuse)
    assert cli_main(["predict", str(trained), "--tasks", "nope"]) == 2
    assert "unknown task(s) ['nope']; this model has: demo_ner" in capsys.readouterr().err


def test_export_writes_a_model_the_pipeline_loads(trained, tmp_path, capsys):
    assert cli_main(["export", str(trained), "--task", "demo_topic", str(tmp_path / "topic")]) == 0
    assert "exported task 'demo_topic'" in capsys.readouterr().out
    classify = pipeline("text-classification", model=str(tmp_path / "topic"))
    ours = Predictor.from_pretrained(trained, mixed_precision="no").predict("The team won the final .")
    answer = classify("The team won the final .")[0]
    assert answer["label"] == ours["demo_topic"]["label"]
    assert answer["score"] == pytest.approx(ours["demo_topic"]["score"], abs=1e-4)


def test_export_never_writes_over_a_checkpoint_or_other_files_without_overwrite(trained, tmp_path, capsys):
    before = {path.name: path.read_bytes() for path in trained.iterdir() if path.is_file()}
    # Into its own checkpoint: refused, with or without --overwrite, and nothing changes.
    for extra in ([], ["--overwrite"]):
        assert cli_main(["export", str(trained), "--task", "demo_topic", str(trained), *extra]) == 2
        assert f"{trained} is the checkpoint this command reads" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in trained.iterdir() if path.is_file()} == before
    assert Predictor.from_pretrained(trained, mixed_precision="no").tasks == ["demo_ner", "demo_sentiment",
                                                                               "demo_topic"]
    # Into a folder with other files: refused by name, then written with --overwrite.
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert cli_main(["export", str(trained), "--task", "demo_topic", str(folder)]) == 2
    assert f"{folder} already holds files (notes.txt): give an empty or new folder, or --overwrite" in (
        capsys.readouterr().err)
    assert sorted(path.name for path in folder.iterdir()) == ["notes.txt"]
    assert cli_main(["export", str(trained), "--task", "demo_topic", str(folder), "--overwrite"]) == 0
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "config.json").is_file()
    # A second export over the first export: a checkpoint is there.
    assert cli_main(["export", str(trained), "--task", "demo_ner", str(folder)]) == 2
    assert f"{folder} already holds a checkpoint (README.md, config.json," in capsys.readouterr().err
    assert cli_main(["export-onnx", str(trained), str(folder)]) == 2
    assert f"{folder} already holds a checkpoint" in capsys.readouterr().err


def test_tasks_lists_type_source_and_labels_without_importing_torch():
    code = ("import sys; from mtl_nlp.cli import main; main(['tasks']); "
            "print('torch loaded' if 'torch' in sys.modules else 'no torch')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "no torch"
    sst2 = next(line for line in lines if line.startswith("sst2 "))
    assert sst2.split() == ["sst2", "classification", "stanfordnlp/sst2", "negative,", "positive"]


def test_version_and_every_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as done:
        cli_main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"mtl-nlp {__version__}"
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            cli_main([command, "--help"])
        text = capsys.readouterr().out
        assert f"usage: mtl-nlp {command}" in text and "example" in text, command
    assert sorted(build_parser()._subparsers._group_actions[0].choices) == sorted(COMMANDS)


@pytest.mark.parametrize("argv, message", [
    (["train", "train.lrr=1"], "unknown config key 'train.lrr'"),
    (["train", "--config", "missing.yaml"], "config file not found: missing.yaml"),
    # a checkpoint that is not there: one message from every command that reads one
    (["evaluate", "nowhere"], "no checkpoint at nowhere: there is no such folder\n"),
    (["predict", "./nowhere"], "no checkpoint at nowhere: there is no such folder\n"),
    (["export", "./nowhere", "--task", "x", "out"], "no checkpoint at nowhere: there is no such folder\n"),
    (["export-onnx", "./nowhere", "out"], "no checkpoint at nowhere: there is no such folder\n"),
    (["finetune", "./nowhere"], "no checkpoint at nowhere: there is no such folder\n"),
    (["push", "./nowhere", "me/model"], "no checkpoint at nowhere: there is no such folder\n"),
    (["compare", "./nowhere", "./elsewhere"], "no checkpoint at nowhere: there is no such folder\n"),
])
def test_user_errors_are_one_line_with_exit_code_2(argv, message, capsys):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mtl-nlp: error: ") and message in err


def test_checkpoint_errors_name_the_valid_choices(trained, tmp_path, capsys):
    assert cli_main(["export", str(trained), "--task", "demo_nre", str(tmp_path / "x")]) == 2
    assert "no task 'demo_nre'; its tasks: demo_ner, demo_sentiment, demo_topic" in capsys.readouterr().err
    assert cli_main(["predict", str(trained), "--tasks", "pos"]) == 2
    assert "unknown task(s) ['pos']; this model has: demo_ner" in capsys.readouterr().err
    assert cli_main(["evaluate", str(trained), "tasks=[demo_ner,stsb]"]) == 2
    assert "task(s) stsb not in checkpoint" in capsys.readouterr().err


def test_overrides_may_follow_options_and_strays_are_refused(trained, tmp_path, capsys):
    target = tmp_path / "x.json"
    assert cli_main(["evaluate", str(trained), "--output", str(target), "max_eval_examples=3"]) == 0
    assert json.loads(target.read_text())["reports"]
    with pytest.raises(SystemExit) as done:
        cli_main(["export", str(trained), "--task", "demo_ner", str(tmp_path / "o"), "stray=1"])
    assert done.value.code == 2 and "unrecognized arguments: stray=1" in capsys.readouterr().err


def test_debug_shows_the_traceback(capsys):
    from mtl_nlp.config import ConfigError

    with pytest.raises(ConfigError):
        cli_main(["train", "--debug", "train.lrr=1"])


def test_recipe_prints_a_user_error_as_one_line_and_exits_2():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "recipes" / "cls_ner.py"), "sampling.strategy=best"],
                            capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "cls_ner.py: error: sampling.strategy='best' is not one of: proportional, temperature, uniform, "
        "annealed, round_robin"
    )


def test_accelerate_launch_runs_the_train_command(tiny_model_dir, tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "mtl_nlp.cli", "train", f"model={tiny_model_dir}", f"output_dir={tmp_path / 'run'}",
               f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no", "train.max_steps=2"]
    result = run_process_group(command, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "precision: fp32 (mixed_precision=no in the config)" in result.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_two_process_evaluation_gives_exactly_the_one_process_metrics(trained, tmp_path):
    # A short max_length makes many NER sentences several windows, spread over both ranks.
    short = ["max_length=8", "stride=2"]
    assert cli_main(["evaluate", str(trained), "--output", str(tmp_path / "one.json"), *short]) == 0
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "mtl_nlp.cli",
               "evaluate", str(trained), "--output", str(tmp_path / "two.json"), "cpu_threads=1", *short]
    result = run_process_group(command, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert one["windows"]["demo_ner"]["windowed_examples"] > 50
    assert two == one
