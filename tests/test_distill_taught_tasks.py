"""`mtl-nlp distill --tasks`: only the named tasks get a teacher; the others learn from gold alone."""

from __future__ import annotations

import json

from mtl_nlp.cli import main as cli_main


def test_distill_teaches_only_the_named_tasks(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "distilled"
    common = ["distill", f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no",
              "train.batch_size=8", "train.lr=1e-3", "train.max_steps=2", "max_train_examples=24",
              "max_eval_examples=8", "tasks=[demo_ner, demo_sentiment]", f"output_dir={out}"]
    assert cli_main([*common, "--tasks", "demo_sentiment"]) == 0
    table = capsys.readouterr().out
    assert "| demo_ner | f1 | - |" in table and "none (gold labels only)" in table
    assert "the teachers take 1" in table
    assert sorted(path.name for path in (out / "teachers").iterdir()) == ["demo_sentiment"]
    rows = {row["task"]: row for row in json.loads((out / "distill.json").read_text())["tasks"]}
    assert rows["demo_ner"]["teacher"] is None and rows["demo_ner"]["teacher_dir"] is None
    assert rows["demo_sentiment"]["teacher_dir"] == str(out / "teachers" / "demo_sentiment")
    saved = json.loads((out / "mtl_nlp.json").read_text())["run_config"]["distill"]["teachers"]
    assert saved == {"demo_sentiment": str(out / "teachers" / "demo_sentiment")}


def test_distill_tasks_refuses_unknown_tasks_and_named_teachers_it_leaves_out(
        tiny_model_dir, tmp_path, capsys):
    common = ["distill", f"model={tiny_model_dir}", "tasks=[demo_ner, demo_sentiment]",
              f"output_dir={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}"]
    assert cli_main([*common, "--tasks", "demo_sentiment, demo_topic"]) == 2
    error = capsys.readouterr().err
    assert "--tasks names demo_topic, not a task of the config; its tasks: demo_ner, demo_sentiment" in error
    assert cli_main([*common, "--tasks", "demo_sentiment", f"distill.teachers.demo_ner={tmp_path}"]) == 2
    error = capsys.readouterr().err
    assert "distill.teachers names a teacher for demo_ner, which --tasks leaves out (demo_sentiment)" in error
    assert cli_main([*common, "--tasks", " , "]) == 2
    assert "--tasks names no task; name the tasks to teach among: demo_ner, demo_sentiment" in (
        capsys.readouterr().err)
    assert not (tmp_path / "out").exists()  # refused before anything was trained
