"""Entries of several heads over one dataset (joint NLU: an intent and slot tags per utterance):
validation, one tokenized input with every head's labels, one encoder pass per batch with the
heads' losses summed, exact match, a run, reload, prediction and export of each head."""

import json
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from recipe_module import load_recipe
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

from mtl_nlp import Predictor, TaskSpec
from mtl_nlp.data.features import IGNORE_INDEX
from mtl_nlp.data.pipeline import build_collator, prepare_task_data
from mtl_nlp.modeling.model import MultiTaskModel
from mtl_nlp.publish.export import export_task
from mtl_nlp.registry import MULTI_HEAD, TaskError, resolve_tasks, store
from mtl_nlp.training.metrics import exact_match
from mtl_nlp.training.setup import head_configs

ROWS = [
    {"tokens": ["anna", "visited", "york"], "tags": ["B-PER", "O", "B-LOC"], "intent": "travel"},
    {"tokens": ["acme", "corp", "visited", "york"], "tags": ["B-ORG", "I-ORG", "O", "B-LOC"],
     "intent": "business"},
]
# The test split has an intent and a slot tag that training never shows: scored as errors.
UNSEEN = {"tokens": ["anna", "visited", "acme", "corp"], "tags": ["B-PER", "O", "B-MISC", "I-MISC"],
          "intent": "weather"}


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps({**row, "text": " ".join(row["tokens"])}) + "\n" for row in rows))
    return str(path)


def atis_entry(tmp_path: Path, slots_weight: float = 1.0) -> dict:
    train = write_rows(tmp_path / "train.jsonl", ROWS * 4)
    test = write_rows(tmp_path / "test.jsonl", [*ROWS, UNSEEN])
    return {
        "name": "atis", "format": "json", "data_files": {"train": train, "validation": train, "test": test},
        "heads": [
            {"name": "intent", "type": "classification", "text_column": "text", "label_column": "intent"},
            {"name": "slots", "type": "token_classification", "tokens_column": "tokens",
             "tags_column": "tags", "loss_weight": slots_weight},
        ],
    }


def test_exact_match_counts_examples_every_head_gets_right():
    gold = {"intent": ["fly", "fare", "fly"], "slots": [["O", "B-city"], ["O"], ["B-city", "O"]]}
    predicted = {"intent": ["fly", "fly", "fly"], "slots": [["O", "B-city"], ["O"], ["O", "O"]]}
    # example 0 all right; example 1 intent wrong; example 2 one slot wrong
    assert exact_match(gold, predicted) == pytest.approx(1 / 3)
    assert exact_match({"intent": []}, {"intent": []}) == 0.0
    with pytest.raises(ValueError, match="different numbers of examples"):
        exact_match({"a": [1, 2]}, {"a": [1]})


def test_an_entry_is_one_task_with_heads_sharing_its_data_keys(tmp_path):
    (spec,) = resolve_tasks([atis_entry(tmp_path)])
    assert spec.type == MULTI_HEAD
    assert [(head.name, head.type) for head in spec.heads] == [
        ("intent", "classification"), ("slots", "token_classification")]
    assert all(head.data_files == spec.data_files and head.format == "json" for head in spec.heads)
    assert spec.tokens_column == "tokens"  # the entry reads its tagging head's words
    assert resolve_tasks([atis_entry(tmp_path)]) == [spec]  # the same entry again is the same spec


@pytest.mark.parametrize(("change", "message"), [
    ({"type": "classification"}, "an entry with heads has no type of its own"),
    ({"label_column": "intent"}, r"unknown key\(s\) label_column; valid keys of an entry with heads"),
    ({"heads": [{"name": "intent", "type": "classification", "dataset": "x"}]},
     r"head 'intent': unknown key\(s\) dataset; a head takes: label_column"),
    ({"heads": [{"name": "intent", "type": "classification"}, {"name": "intent", "type": "regression"}]},
     "head name.s. intent used twice"),
    ({"heads": [{"name": "atis", "type": "classification"}]}, "head name.s. atis used twice"),
    ({"heads": [{"name": "a", "type": "classification"}, {"name": "b", "type": "classification",
                                                           "text_column": "other"}]},
     r"its heads read different inputs \(text column \(and text pair column\): a: \('text', None\), "
     r"b: \('other', None\)\)"),
    ({"heads": [{"name": "a", "type": "token_classification"},
                {"name": "b", "type": "token_classification", "tokens_column": "words"}]},
     r"its heads read different inputs \(tokens column: a: 'tokens', b: 'words'\)"),
    ({"heads": [{"name": "a", "type": "token_classification"},
                {"name": "b", "type": "classification", "text_pair_column": "other"}]},
     r"head\(s\) b read text pairs"),
    ({"heads": [{"name": "a"}]}, "head 'a' is missing type"),
    ({"heads": []}, "heads must be a non-empty list"),
    ({"streaming": True}, "cannot stream"),
])
def test_entry_errors_name_the_cause(tmp_path, change, message):
    with pytest.raises(TaskError, match=message):
        TaskSpec.from_dict({**atis_entry(tmp_path), **change})


def test_a_registered_entry_takes_data_changes_for_one_run(tmp_path):
    resolve_tasks([atis_entry(tmp_path)])  # registers it
    (changed,) = resolve_tasks([{"name": "atis", "max_train_examples": 5}])
    assert [head.max_train_examples for head in (changed, *changed.heads)] == [5, 5, 5]
    with pytest.raises(TaskError, match=r"unknown key\(s\) metric; valid keys of an entry with heads"):
        resolve_tasks([{"name": "atis", "metric": "f1"}])


def test_head_names_are_unique_across_the_run(tmp_path):
    plain = {"name": "intent", "type": "classification", "dataset": "x"}
    expected = r"task and head names must be unique in a run: 'intent' in atis, intent"
    with pytest.raises(TaskError, match=expected):
        resolve_tasks([atis_entry(tmp_path), plain])


def test_an_entry_tokenizes_once_with_every_heads_labels(tmp_path, tiny_tokenizer):
    (spec,) = resolve_tasks([atis_entry(tmp_path)])
    data = prepare_task_data([spec], tiny_tokenizer, max_length=16)["atis"]
    assert list(data.heads) == ["intent", "slots"]
    assert data.heads["intent"].labels == ["business", "travel"]
    assert data.heads["slots"].labels == ["B-LOC", "B-ORG", "B-PER", "I-ORG", "O"]
    assert data.main_metrics == {"intent": "accuracy", "slots": "f1"}
    first = data.splits["train"][0]
    assert tiny_tokenizer.convert_ids_to_tokens(first["input_ids"]) == [
        "[CLS]", "an", "##na", "visited", "york", "[SEP]"]
    # "anna" is two pieces: its tag on the first, the continuation's I- tag (there is none for
    # PER in training, so ignored) on the second
    assert first["labels"] == {"intent": 1, "slots": [IGNORE_INDEX, 2, IGNORE_INDEX, 4, 0, IGNORE_INDEX]}
    # labels only in test are kept per head, with ids past the head's outputs
    assert data.heads["intent"].unseen == {"test": {"weather": 1}}
    assert data.heads["slots"].unseen == {"test": {"B-MISC": 1, "I-MISC": 1}}
    last = data.splits["test"][2]
    assert last["labels"]["intent"] == 2  # "weather", after business and travel
    assert [tag for tag in last["labels"]["slots"] if tag != IGNORE_INDEX] == [2, 4, 5, 6]
    assert last["example_index"] == 2 and last["word_start"] == 0


def test_one_batch_runs_the_encoder_once_and_sums_the_weighted_losses(
    tmp_path, tiny_tokenizer, tiny_model_dir
):
    (spec,) = resolve_tasks([atis_entry(tmp_path, slots_weight=2.0)])
    tasks = prepare_task_data([spec], tiny_tokenizer, max_length=16)
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), head_configs(tasks)).eval()
    assert model.entries == {"atis": ["intent", "slots"]}
    assert model.batch_tasks == ["atis"]
    train = tasks["atis"].splits["train"].select(range(2))
    rows = [{k: v for k, v in row.items() if k != "length"} for row in train]
    batch = build_collator(MULTI_HEAD, tiny_tokenizer)(rows)
    assert batch["labels"]["intent"].tolist() == [1, 0]
    assert batch["labels"]["slots"].shape == batch["input_ids"].shape
    calls = []
    handle = model.encoder.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        output = model(task="atis", **batch)
    handle.remove()
    assert len(calls) == 1
    assert set(output["logits"]) == {"intent", "slots"}
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
    with torch.no_grad():
        intent = model(task="intent", **inputs, labels=batch["labels"]["intent"])
        slots = model(task="slots", **inputs, labels=batch["labels"]["slots"])
    assert torch.equal(output["logits"]["intent"], intent["logits"])
    assert output["loss"].item() == pytest.approx((intent["loss"] + 2.0 * slots["loss"]).item(), rel=1e-6)


def test_an_entry_with_private_layers_gives_each_head_its_copy_and_reloads(
    tmp_path, tiny_tokenizer, tiny_model_dir
):
    from mtl_nlp.modeling.sharing import SharingShape

    (spec,) = resolve_tasks([atis_entry(tmp_path)])
    tasks = prepare_task_data([spec], tiny_tokenizer, max_length=16)
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), head_configs(tasks),
                                        SharingShape(private_layers=1)).eval()
    assert set(model.sharing.private) == {"intent", "slots"}
    inputs = tiny_tokenizer(["anna visited york"], return_tensors="pt")
    with torch.no_grad():
        joint = model(task="atis", **inputs)["logits"]
        alone = {head: model(task=head, **inputs)["logits"] for head in ("intent", "slots")}
    for head in ("intent", "slots"):
        assert torch.equal(joint[head], alone[head])
    model.save_pretrained(tmp_path / "ckpt", tokenizer=tiny_tokenizer)
    loaded = MultiTaskModel.from_pretrained(tmp_path / "ckpt").eval()
    with torch.no_grad():
        reloaded = loaded(task="atis", **inputs)["logits"]
    for head in ("intent", "slots"):
        assert torch.equal(joint[head], reloaded[head])


def test_save_and_reload_keep_the_entry(tmp_path, tiny_tokenizer, tiny_model_dir):
    (spec,) = resolve_tasks([atis_entry(tmp_path)])
    tasks = prepare_task_data([spec], tiny_tokenizer, max_length=16)
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), head_configs(tasks)).eval()
    model.save_pretrained(tmp_path / "ckpt", tokenizer=tiny_tokenizer)
    loaded = MultiTaskModel.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.entries == {"atis": ["intent", "slots"]}
    assert loaded.task_names == ["intent", "slots"]
    inputs = tiny_tokenizer(["anna visited york"], return_tensors="pt")
    with torch.no_grad():
        before, after = model(task="atis", **inputs)["logits"], loaded(task="atis", **inputs)["logits"]
    for head in ("intent", "slots"):
        assert torch.equal(before[head], after[head])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir):
    """A 3-step run of the ATIS-like entry (two heads) beside a plain classification task."""
    tmp_path = tmp_path_factory.mktemp("multi-head-run")
    train = tmp_path / "cls.tsv"
    train.write_text("text\tlabel\n" + "anna visited\ta\nyork corp\tb\n" * 8)
    plain = {"name": "topic", "type": "classification", "format": "tsv",
             "data_files": {"train": str(train), "validation": str(train)}}
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"tasks": [atis_entry(tmp_path), plain]}))
    output = tmp_path / "run"
    saved = dict(store._REGISTRY)  # module-scoped: the per-test registry fixture runs after this
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        load_recipe().main(["--config", str(config), f"model={tiny_model_dir}", f"output_dir={output}",
                            f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no", "train.max_steps=3",
                            "train.batch_size=4"])
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        store._REGISTRY.clear()
        store._REGISTRY.update(saved)
    return output


def test_a_run_scores_each_head_and_the_entrys_exact_match(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics["intent"]) >= {"accuracy", "macro_f1"}
    assert set(metrics["slots"]) == {"precision", "recall", "f1"}
    assert set(metrics["atis"]) == {"exact_match"}
    assert 0.0 <= metrics["atis"]["exact_match"] <= 2 / 3  # the test example with unseen labels is wrong
    assert metrics["main_metrics"] == {"intent": "accuracy", "slots": "f1", "topic": "accuracy",
                                       "atis": "exact_match"}
    # model selection and the overall score: the mean of every head's main metric
    expected = (metrics["intent"]["accuracy"] + metrics["slots"]["f1"] + metrics["topic"]["accuracy"]) / 3
    assert metrics["overall"]["score"] == pytest.approx(expected)
    assert metrics["unseen_labels"] == {"intent": {"weather": 1}, "slots": {"B-MISC": 1, "I-MISC": 1}}
    assert set(metrics["reports"]) == {"intent", "slots", "topic"}
    state = json.loads((trained_run / "trainer_state.json").read_text())
    # the sampler draws the entry as one task
    assert set(state["task_batches"]) == {"atis", "topic"}
    assert sum(state["task_batches"].values()) == 3
    assert set(state["weighting"]["weights"]) == {"atis", "topic"}


def test_the_predictor_answers_every_head(trained_run):
    predictor = Predictor.from_pretrained(trained_run, device="cpu", mixed_precision="no")
    assert predictor.tasks == ["intent", "slots", "topic"]
    answer = predictor.predict("anna visited york")
    assert set(answer) == {"intent", "slots", "topic"}
    assert answer["intent"]["label"] in {"business", "travel"}
    assert isinstance(answer["slots"], list)
    only = predictor.predict("anna visited york", tasks=["slots"])
    assert set(only) == {"slots"}


def test_each_head_of_an_entry_exports_on_its_own(trained_run, tmp_path):
    model = MultiTaskModel.from_pretrained(trained_run).eval()
    tokenizer = Predictor.from_pretrained(trained_run, device="cpu", mixed_precision="no").tokenizer
    inputs = tokenizer(["anna visited york"], return_tensors="pt")
    intent = AutoModelForSequenceClassification.from_pretrained(export_task(trained_run, "intent",
                                                                            tmp_path / "intent")).eval()
    slots = AutoModelForTokenClassification.from_pretrained(export_task(trained_run, "slots",
                                                                        tmp_path / "slots")).eval()
    assert intent.config.id2label == {0: "business", 1: "travel"}
    assert slots.config.id2label == {0: "B-LOC", 1: "B-ORG", 2: "B-PER", 3: "I-ORG", 4: "O"}
    with torch.no_grad():
        ours = model(task="atis", **inputs)["logits"]
        assert torch.allclose(intent(**inputs).logits, ours["intent"], atol=1e-5)
        assert torch.allclose(slots(**inputs).logits, ours["slots"], atol=1e-5)


def test_the_cli_evaluation_of_the_checkpoint_repeats_its_metrics(trained_run, tmp_path):
    from mtl_nlp.cli import main as cli_main

    target = tmp_path / "scores.json"
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        assert cli_main(["evaluate", str(trained_run), "--output", str(target)]) == 0
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert json.loads(target.read_text()) == json.loads((trained_run / "metrics.json").read_text())


def test_ddp_finds_the_parameters_an_entry_leaves_unused(tiny_model_dir):
    from mtl_nlp.modeling.heads import HeadConfig
    from mtl_nlp.training.unused_parameters import parameters_unused_by

    heads = [HeadConfig(name="intent", type="classification", labels=["a", "b"], entry="atis"),
             HeadConfig(name="slots", type="token_classification", labels=["O", "B-X"], entry="atis"),
             HeadConfig(name="topic", type="classification", labels=["a", "b"])]
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), heads)
    assert model.batch_tasks == ["atis", "topic"]
    unused = parameters_unused_by(model, model.batch_tasks)
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    atis = {names[id(parameter)] for parameter in unused["atis"]}
    topic = {names[id(parameter)] for parameter in unused["topic"]}
    assert {name.split(".")[1] for name in atis if name.startswith("heads.")} == {"topic"}
    assert {name.split(".")[1] for name in topic if name.startswith("heads.")} == {"intent", "slots"}


def test_sentence_heads_score_each_example_once_when_it_is_windowed(
    tmp_path, tiny_tokenizer, tiny_model_dir
):
    from accelerate import Accelerator

    from mtl_nlp.training.evaluation import build_eval_loaders, evaluate_with_reports

    entry = atis_entry(tmp_path)
    validation = [  # the model below always answers travel and O
        {"tokens": ["anna", "visited", "york"], "tags": ["O", "O", "O"], "intent": "travel"},  # exact
        {"tokens": ["acme", "corp", "visited", "york"], "tags": ["O"] * 4, "intent": "business"},
        # exact, and longer than max_length: several windows
        {"tokens": ["anna", "visited", "york", "acme", "corp"], "tags": ["O"] * 5, "intent": "travel"},
        {"tokens": ["anna", "visited", "york"], "tags": ["B-PER", "O", "B-LOC"], "intent": "travel"},
    ]
    entry["data_files"]["validation"] = write_rows(tmp_path / "valid.jsonl", validation)
    tasks = prepare_task_data(resolve_tasks([entry]), tiny_tokenizer, max_length=5)
    assert max(tasks["atis"].splits["validation"]["example_index"]) == 3
    assert len(tasks["atis"].splits["validation"]) > 4  # long examples are several windows
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), head_configs(tasks))
    with torch.no_grad():
        for name, answer in (("intent", 1), ("slots", 4)):  # travel; O
            classifier = model.heads[name].classifier
            classifier.weight.zero_()
            classifier.bias.zero_()
            classifier.bias[answer] = 5.0
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        accelerator = Accelerator(cpu=True)
        loaders = build_eval_loaders(tasks, "validation", tiny_tokenizer, 2, accelerator)
        metrics, reports = evaluate_with_reports(accelerator, model, loaders, tasks)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert metrics["intent"]["accuracy"] == 0.75
    supports = [row["support"] for label, row in reports["intent"].items() if label in ("business", "travel")]
    assert sum(supports) == 4  # one answer per example, not per window
    assert metrics["slots"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert metrics["atis"] == {"exact_match": 0.5}


def test_finetune_trains_an_entrys_heads_together(trained_run):
    from mtl_nlp.workflows.finetune import finetune_tasks

    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        summary = finetune_tasks(trained_run, ["slots", "intent"], ["train.max_steps=1"])
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    folder = trained_run / "finetuned" / "atis"
    assert [(row["task"], row["metric"], row["output_dir"]) for row in summary["tasks"]] == [
        ("slots", "f1", str(folder)), ("intent", "accuracy", str(folder))]
    # the entry's checkpoint, plus the multi-task one for `topic`, which was not fine-tuned
    assert summary["encoder_passes"] == {"multi_task": 1, "finetuned": 2}
    after = json.loads((folder / "metrics.json").read_text())
    expected = [after["slots"]["f1"], after["intent"]["accuracy"]]
    assert [row["finetuned"] for row in summary["tasks"]] == expected
    assert MultiTaskModel.from_pretrained(folder).entries == {"atis": ["intent", "slots"]}


def test_an_entry_of_sentence_heads_reads_its_texts(tmp_path, tiny_tokenizer, tiny_model_dir):
    rows = [{"text": "anna visited york", "intent": "travel", "aspects": "a,b", "score": 1.5},
            {"text": "acme corp", "intent": "business", "aspects": "b", "score": 0.0}]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows * 3))
    entry = {"name": "joint", "format": "json", "data_files": {"train": str(path), "validation": str(path)},
             "heads": [{"name": "intent", "type": "classification", "label_column": "intent"},
                       {"name": "aspects", "type": "multilabel", "label_column": "aspects"},
                       {"name": "score", "type": "regression", "label_column": "score"}]}
    tasks = prepare_task_data(resolve_tasks([entry]), tiny_tokenizer, max_length=16)
    train = tasks["joint"].splits["train"]
    assert train[0]["labels"] == {"intent": 1, "aspects": [1.0, 1.0], "score": 1.5}
    assert tiny_tokenizer.convert_ids_to_tokens(train[1]["input_ids"]) == ["[CLS]", "acme", "corp", "[SEP]"]
    batch = build_collator(MULTI_HEAD, tiny_tokenizer)(
        [{k: v for k, v in row.items() if k != "length"} for row in train.select(range(2))])
    labels = batch["labels"]
    assert (labels["intent"].dtype, labels["aspects"].dtype, labels["score"].dtype) == (
        torch.int64, torch.float32, torch.float32)
    assert labels["aspects"].tolist() == [[1.0, 1.0], [0.0, 1.0]]
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), head_configs(tasks)).eval()
    with torch.no_grad():
        output = model(task="joint", **batch)
        inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
        separate = [model(task=head, **inputs, labels=labels[head])["loss"] for head in labels]
    assert output["loss"].item() == pytest.approx(sum(separate).item(), rel=1e-6)


def test_two_ranks_train_an_entry_to_identical_weights(tiny_model_dir, tmp_path):
    """DDP: the entry's parameters unused by the other task (and back) are found, evaluation
    gathers every head's rows in step, and both ranks end alike."""
    import os
    import subprocess
    import sys

    from process_group import run_process_group

    root = Path(__file__).resolve().parent.parent
    entry = atis_entry(tmp_path)
    files = ", ".join(f"{split}: {path}" for split, path in entry["data_files"].items())
    tasks = (f"tasks=[{{name: atis, format: json, data_files: {{{files}}}, heads: ["
             "{name: intent, type: classification, label_column: intent}, "
             "{name: slots, type: token_classification}]}, demo_sentiment]")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    worker = root / "tests" / "workers" / "ddp_train.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(worker),
               str(tmp_path), tasks, f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}",
               "mixed_precision=no", "train.batch_size=4", "train.lr=1e-3", "train.max_steps=4"]
    result: subprocess.CompletedProcess = run_process_group(command, env=env, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert ranks[0]["tasks"] == ranks[1]["tasks"]
    assert {task for step in ranks[0]["tasks"] for task in step} <= {"atis", "demo_sentiment"}
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), name
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["atis"]) == {"exact_match"}
    assert sum(row["support"] for label, row in metrics["reports"]["intent"].items()
               if label in ("business", "travel", "weather")) == 3  # every test example once
