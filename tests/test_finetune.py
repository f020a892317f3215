"""Two-stage fine-tuning: `init_from` copies a checkpoint's weights, and `mtl-nlp finetune` trains
each task alone from a multi-task checkpoint into loadable checkpoints whose scores it reports."""

import json
import logging

import pytest
import torch
from accelerate.state import AcceleratorState
from recipe_module import copy_run, run_recipe

from mtl_nlp.cli import main as cli_main
from mtl_nlp.config import ConfigError
from mtl_nlp.inference import Predictor
from mtl_nlp.modeling.heads import HeadConfig
from mtl_nlp.modeling.model import MultiTaskModel
from mtl_nlp.training.assembly import log_head_starts
from mtl_nlp.workflows.finetune import finetune_tasks, recommend


@pytest.fixture(scope="module")
def trained_multi_task_run(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    run_recipe([f"model={tiny_model_dir}", f"output_dir={folder / 'mtl'}", f"cache_dir={folder / 'cache'}",
                "mixed_precision=no", "train.batch_size=16", "train.lr=1e-3", "train.max_steps=4",
                "tasks=[demo_ner, demo_sentiment]", "max_eval_examples=40"])
    return folder / "mtl"


@pytest.fixture
def multi_task_run(trained_multi_task_run, tmp_path):
    """The module's multi-task run, copied for a test that writes into it."""
    return copy_run(trained_multi_task_run, tmp_path / "mtl")


def test_start_from_checkpoint_copies_encoder_and_matching_heads(multi_task_run, tiny_model_dir):
    saved = MultiTaskModel.from_pretrained(multi_task_run)
    sentiment = saved.head_configs["demo_sentiment"]
    relabelled = HeadConfig(name="demo_ner", type="token_classification", labels=["O", "B-X", "I-X"])
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), [sentiment, relabelled])
    assert model.start_from_checkpoint(multi_task_run) == ["demo_sentiment"]
    ours, theirs = model.state_dict(), saved.state_dict()
    for key, tensor in ours.items():
        if key.startswith("heads.demo_ner."):
            continue  # other labels: a fresh head
        assert torch.equal(tensor, theirs[key]), key


def test_start_from_checkpoint_refuses_another_sharing_shape(multi_task_run, tiny_model_dir):
    saved = MultiTaskModel.from_pretrained(multi_task_run)
    from mtl_nlp.modeling.sharing import SharingShape

    model = MultiTaskModel.from_encoder(str(tiny_model_dir), list(saved.head_configs.values()),
                                        SharingShape(private_layers=1))
    with pytest.raises(Exception, match="start from it with the same sharing.\\* settings"):
        model.start_from_checkpoint(multi_task_run)


def test_a_hard_sharing_checkpoint_saved_before_share_stack_modules_is_a_start(multi_task_run,
                                                                               tiny_model_dir):
    """Checkpoints saved before `share_stack_modules` existed lack the key; with no private copies
    it changes nothing, so such a checkpoint is still a start for `init_from` and `finetune`."""
    config_path = multi_task_run / "mtl_nlp.json"
    config = json.loads(config_path.read_text())
    del config["sharing"]["share_stack_modules"]
    config_path.write_text(json.dumps(config))
    saved = MultiTaskModel.from_pretrained(multi_task_run)
    assert saved.sharing.shape.share_stack_modules
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), list(saved.head_configs.values()))
    assert model.start_from_checkpoint(multi_task_run) == ["demo_ner", "demo_sentiment"]


def test_a_second_stage_reports_each_head_where_it_starts(tiny_model_dir, caplog):
    heads = [HeadConfig(name=name, type="classification", labels=["a", "b"], pooling="pooler")
             for name in ("kept", "new")]
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), heads)
    with caplog.at_level(logging.INFO, logger="mtl_nlp.training.assembly"):
        log_head_starts(model, ["kept"], "outputs/mtl")
    assert [record.getMessage() for record in caplog.records] == [
        "starting from outputs/mtl: encoder and the heads of kept; fresh heads: new",
        "pooler heads new start from the encoder's pretrained pooler",  # not 'kept': the checkpoint's
    ]


def test_finetune_writes_a_checkpoint_per_task_and_reports_scores(multi_task_run, capsys):
    AcceleratorState._reset_state(reset_partial_state=True)
    assert cli_main(["finetune", str(multi_task_run), "--tasks", "demo_sentiment, demo_ner",
                     "train.max_steps=2"]) == 0
    table = capsys.readouterr().out
    summary = json.loads((multi_task_run / "finetuned" / "finetune.json").read_text())
    before = json.loads((multi_task_run / "metrics.json").read_text())
    assert [row["task"] for row in summary["tasks"]] == ["demo_sentiment", "demo_ner"]
    assert summary["encoder_passes"] == {"multi_task": 1, "finetuned": 2}
    for row in summary["tasks"]:
        folder = multi_task_run / "finetuned" / row["task"]
        after = json.loads((folder / "metrics.json").read_text())
        assert list(after["main_metrics"]) == [row["task"]]  # a single-task checkpoint
        assert row["multi_task"] == before[row["task"]][row["metric"]]
        assert row["finetuned"] == after[row["task"]][row["metric"]]
        assert Predictor.from_pretrained(folder).tasks == [row["task"]]
        history = json.loads((folder / "trainer_state.json").read_text())["history"]
        assert history[0]["step"] == 0  # the starting point was a candidate
        assert f"| {row['task']} | {row['metric']} | {row['multi_task']:.4f} |" in table
    assert "with the fine-tuned checkpoints, each taking its own pass, it takes 2." in table


def test_finetune_refuses_unknown_tasks_and_keys_it_sets(multi_task_run):
    with pytest.raises(ConfigError, match="task\\(s\\) nope not in the checkpoint, whose tasks are: "
                                          "demo_ner, demo_sentiment"):
        finetune_tasks(multi_task_run, ["nope"])
    with pytest.raises(ConfigError, match="finetune sets output_dir itself .*; it writes DIR/finetuned/ "
                                          "\\(--overwrite replaces an earlier second stage there\\)"):
        finetune_tasks(multi_task_run, None, ["output_dir=elsewhere"])
    with pytest.raises(ConfigError, match="finetune keeps the multi-task run's seed: it draws the validation "
                                          "split held out of each task's training data"):
        finetune_tasks(multi_task_run, None, ["seed=7"])


def test_finetune_again_names_the_earlier_second_stage_and_replaces_it_with_overwrite(multi_task_run,
                                                                                     capsys):
    command = ["finetune", str(multi_task_run), "--tasks", "demo_sentiment", "--compare-alone",
               "train.max_steps=1"]
    AcceleratorState._reset_state(reset_partial_state=True)
    assert cli_main(command) == 0
    first = (multi_task_run / "finetuned" / "demo_sentiment" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert cli_main(command) == 2
    assert (f"{multi_task_run / 'finetuned'} already holds a second stage (finetuned/demo_sentiment, "
            "finetuned/alone/demo_sentiment): keep it (choose other --tasks, or move the folder away) or "
            "replace it with --overwrite") in capsys.readouterr().err
    assert (multi_task_run / "finetuned" / "demo_sentiment" / "model.safetensors").read_bytes() == first
    AcceleratorState._reset_state(reset_partial_state=True)
    assert cli_main([*command, "--overwrite", "train.max_steps=2"]) == 0
    saved = json.loads((multi_task_run / "finetuned" / "demo_sentiment" / "mtl_nlp.json").read_text())
    assert saved["run_config"]["train"]["max_steps"] == 2


def test_compare_alone_trains_each_task_from_the_pretrained_encoder_and_recommends(
        multi_task_run, tiny_model_dir, capsys):
    AcceleratorState._reset_state(reset_partial_state=True)
    assert cli_main(["finetune", str(multi_task_run), "--tasks", "demo_sentiment", "--compare-alone",
                     "train.max_steps=2"]) == 0
    table = capsys.readouterr().out
    [row] = json.loads((multi_task_run / "finetuned" / "finetune.json").read_text())["tasks"]
    alone = multi_task_run / "finetuned" / "alone" / "demo_sentiment"
    saved = json.loads((alone / "mtl_nlp.json").read_text())["run_config"]
    assert saved["init_from"] is None and saved["model"] == str(tiny_model_dir)
    assert saved["train"]["max_steps"] == 2  # the overrides apply to both
    assert row["alone"] == json.loads((alone / "metrics.json").read_text())["demo_sentiment"][row["metric"]]
    tuned = multi_task_run / "finetuned" / "demo_sentiment"
    choice, folder, validation = recommend(multi_task_run, tuned, alone)
    assert (row["recommended"], row["recommended_dir"]) == (choice, str(folder))
    assert row["validation"] == validation
    # demo_ner stays on the multi-task checkpoint: one pass for it, one for demo_sentiment unless
    # the multi-task checkpoint is recommended for it too
    passes = 1 if row["recommended"] == "multi_task" else 2
    summary = json.loads((multi_task_run / "finetuned" / "finetune.json").read_text())
    assert summary["encoder_passes"]["recommended"] == passes
    states = {side: json.loads((folder / "trainer_state.json").read_text())["best_validation_overall"]
              for side, folder in (("finetuned", multi_task_run / "finetuned" / "demo_sentiment"),
                                   ("alone", alone))}
    assert row["validation"] == states
    assert (f"| {row['alone']:.4f} | {states['finetuned']:.4f} / {states['alone']:.4f} | "
            f"{row['recommended']}: {row['recommended_dir']} |") in table
    assert f"with the recommended checkpoints it takes {passes}." in table


@pytest.mark.parametrize("tuned, alone, best_step, expected", [
    (0.70, 0.72, 5, "alone"),
    (0.72, 0.72, 5, "finetuned"),  # a tie keeps the multi-task side
    (0.72, 0.70, 5, "finetuned"),
    (0.72, 0.70, 0, "multi_task"),  # the second stage kept its start
])
def test_recommend_chooses_on_validation(tmp_path, tuned, alone, best_step, expected):
    for name, score, step in (("tuned", tuned, best_step), ("alone", alone, 7)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.json").write_text(
            json.dumps({"best_validation_overall": score, "best_step": step}))
    folders = {"alone": tmp_path / "alone", "finetuned": tmp_path / "tuned", "multi_task": tmp_path}
    assert recommend(tmp_path, tmp_path / "tuned", tmp_path / "alone") == (
        expected, folders[expected], {"finetuned": tuned, "alone": alone})


def test_finetune_refuses_reserved_task_names_and_compare_alone_with_private_only(multi_task_run):
    saved_path = multi_task_run / "mtl_nlp.json"
    saved = json.loads(saved_path.read_text())
    saved["tasks"][0]["name"] = "alone"
    saved_path.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="task 'alone' would be written over DIR/finetuned/alone"):
        finetune_tasks(multi_task_run, ["alone"], compare_alone=True)
    with pytest.raises(ConfigError, match="--compare-alone weighs whole-model checkpoints"):
        finetune_tasks(multi_task_run, ["demo_sentiment"], private_only=True, compare_alone=True)


@pytest.fixture
def private_layers_run(recipe, tiny_model_dir, tmp_path):
    output = tmp_path / "private"
    recipe.main([f"model={tiny_model_dir}", f"output_dir={output}", f"cache_dir={tmp_path / 'cache'}",
                 "mixed_precision=no", "train.batch_size=16", "train.lr=1e-3", "train.max_steps=4",
                 "tasks=[demo_ner, demo_sentiment]", "max_eval_examples=40", "sharing.private_layers=1"])
    return output


def test_private_layers_only_keeps_one_shared_pass(private_layers_run, capsys):
    AcceleratorState._reset_state(reset_partial_state=True)
    assert cli_main(["finetune", str(private_layers_run), "--private-layers-only", "train.max_steps=3",
                     "train.lr=1e-2", "train.eval_every=1"]) == 0
    printed = capsys.readouterr().out
    assert "finetuned/one_pass: every fine-tuned task in one checkpoint, 1 shared pass" in printed
    summary = json.loads((private_layers_run / "finetuned" / "finetune.json").read_text())
    assert summary["encoder_passes"] == {"multi_task": 1, "finetuned": 2, "one_pass": 1}
    start = MultiTaskModel.from_pretrained(private_layers_run).state_dict()
    one_pass = MultiTaskModel.from_pretrained(private_layers_run / "finetuned" / "one_pass")
    combined = one_pass.state_dict()
    for task in ("demo_ner", "demo_sentiment"):
        tuned = MultiTaskModel.from_pretrained(private_layers_run / "finetuned" / task).state_dict()
        for key, tensor in tuned.items():
            assert torch.equal(combined[key], tensor), key  # the task's weights, assembled
            if key.startswith("encoder."):
                assert torch.equal(tensor, start[key]), key  # the shared encoder stayed frozen
        saved = json.loads((private_layers_run / "finetuned" / task / "mtl_nlp.json").read_text())
        assert saved["sharing"]["freeze_encoder"] and saved["sharing"]["private_layers"] == 1
    texts = ["anna lives in berlin", "the film was great"]
    answers = Predictor.from_pretrained(private_layers_run / "finetuned" / "one_pass").predict(texts)
    for task in ("demo_ner", "demo_sentiment"):
        alone = Predictor.from_pretrained(private_layers_run / "finetuned" / task).predict(texts)
        assert [answer[task] for answer in answers] == [answer[task] for answer in alone]


def test_private_layers_only_needs_private_layers(multi_task_run):
    with pytest.raises(ConfigError, match="has no private layers \\(sharing.private_layers=0\\)"):
        finetune_tasks(multi_task_run, private_only=True)
    with pytest.raises(ConfigError, match="finetune sets sharing.freeze_encoder itself"):
        finetune_tasks(multi_task_run, overrides=["sharing.freeze_encoder=false"], private_only=True)
