"""GLUE built in: its metrics computed by hand, the GLUE average, `metric:` choices, the built-in
entries read from the Hub (faked) and from local files."""

import math

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from mtl_nlp import DataError, TaskSpec, get_task
from mtl_nlp.common.glue import glue_average
from mtl_nlp.data.loading import load_task_splits
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.registry import TaskError
from mtl_nlp.training.metrics import classification_metrics, matthews_correlation


def test_matthews_correlation_of_two_classes_by_hand():
    # positive b: TP 2 (rows 2, 3), FP 1 (row 1), FN 1 (row 4), TN 1 (row 0)
    gold = ["a", "a", "b", "b", "b"]
    predicted = ["a", "b", "b", "b", "a"]
    expected = (2 * 1 - 1 * 1) / math.sqrt((2 + 1) * (2 + 1) * (1 + 1) * (1 + 1))  # 1/6
    assert matthews_correlation(gold, predicted) == pytest.approx(expected, abs=1e-15)
    assert matthews_correlation(gold, gold) == 1.0
    assert matthews_correlation(["a", "b"], ["b", "a"]) == -1.0


def test_matthews_correlation_of_three_classes_by_hand():
    # correct 2 of 4; predicted counts a1 b2 c1; gold counts a2 b1 c1
    # (2*4 - (1*2 + 2*1 + 1*1)) / sqrt((16 - 6) * (16 - 6)) = 3/10
    assert matthews_correlation(["a", "b", "c", "a"], ["a", "b", "b", "c"]) == pytest.approx(0.3, abs=1e-15)


def test_matthews_correlation_is_zero_for_a_constant_side():
    assert matthews_correlation(["a", "b", "a"], ["a", "a", "a"]) == 0.0
    assert matthews_correlation(["a", "a"], ["a", "b"]) == 0.0
    assert matthews_correlation([], []) == 0.0


def test_classification_metrics_report_mcc_and_the_positive_f1():
    gold = ["no", "no", "yes", "yes", "yes"]
    predicted = ["no", "yes", "yes", "yes", "no"]
    scores = classification_metrics(gold, predicted, positive="yes")
    assert scores["accuracy"] == 0.6
    assert scores["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # tp 2, fp 1, fn 1
    assert scores["matthews_correlation"] == pytest.approx(1 / 6)
    assert "f1" not in classification_metrics(gold, predicted)


def test_glue_average_by_hand():
    metrics = {
        "cola": {"accuracy": 0.8, "macro_f1": 0.7, "matthews_correlation": 0.40},
        "mrpc": {"accuracy": 0.80, "f1": 0.90, "macro_f1": 0.7, "matthews_correlation": 0.5},
        "stsb": {"pearson": 0.86, "spearman": 0.84, "mse": 0.6},
        "rte": {"accuracy": 0.60, "macro_f1": 0.6, "matthews_correlation": 0.2},
        "conll2003": {"precision": 0.9, "recall": 0.9, "f1": 0.9},  # not a GLUE task
    }
    result = glue_average(metrics)
    assert result["glue_tasks"] == ["cola", "mrpc", "stsb", "rte"]
    assert result["glue_scores"] == pytest.approx({"cola": 0.40, "mrpc": 0.85, "stsb": 0.85, "rte": 0.60})
    assert result["glue_average"] == pytest.approx((0.40 + 0.85 + 0.85 + 0.60) / 4)
    assert glue_average({"rte": metrics["rte"], "conll2003": metrics["conll2003"]}) is None


def test_metric_choice_is_checked_against_the_task_type():
    spec = TaskSpec(name="c", type="classification", dataset="x", metric="matthews_correlation")
    assert spec.main_metric == "matthews_correlation"
    assert TaskSpec(name="r", type="regression", dataset="x").main_metric == "pearson"
    with pytest.raises(TaskError, match=r"metric 'pearson' is not one of the classification metrics: "
                                        r"accuracy, macro_f1, matthews_correlation, f1"):
        TaskSpec(name="c", type="classification", dataset="x", metric="pearson")
    expected = "metric 'mse' is not one of the regression metrics: pearson, spearman"
    with pytest.raises(TaskError, match=expected):
        TaskSpec.from_dict({"name": "r", "type": "regression", "dataset": "x", "metric": "mse"})


def test_f1_metric_needs_two_labels(tmp_path, tiny_tokenizer):
    train = tmp_path / "train.tsv"
    train.write_text("text\tlabel\nanna\ta\nyork\tb\nacme\tc\ncorp\ta\n")
    spec = TaskSpec(name="three", type="classification", format="tsv", metric="f1",
                    data_files={"train": str(train), "validation": str(train)})
    with pytest.raises(DataError, match="task 'three': metric f1 is the second label's F1 of a two-label "
                                        "task, and this task has 3 labels; use macro_f1"):
        prepare_task_data([spec], tiny_tokenizer, max_length=16)


def test_glue_builtins_name_glue_labels_and_metrics():
    assert get_task("cola").labels == ("unacceptable", "acceptable")
    assert get_task("cola").main_metric == "matthews_correlation"
    assert get_task("mrpc").labels == ("not_equivalent", "equivalent")
    assert get_task("rte").labels == get_task("qnli").labels == ("entailment", "not_entailment")
    assert get_task("mnli").labels == ("entailment", "neutral", "contradiction")
    for name in ("cola", "mrpc", "rte", "qnli", "mnli"):
        spec = get_task(name)
        assert (spec.dataset, spec.dataset_config) == ("nyu-mll/glue", name)
        assert spec.local_files == {"train": f"glue/{name}/train.tsv", "test": f"glue/{name}/test.tsv"}


GLUE_COLUMNS = {"rte": ("sentence1", "sentence2"), "mnli": ("premise", "hypothesis"), "cola": ("sentence",)}


@pytest.fixture
def fake_glue(monkeypatch):
    """nyu-mll/glue as the Hub serves it: ClassLabel ids, unlabeled (-1) test splits."""
    calls = []

    def load_dataset(name, config=None, cache_dir=None, **kwargs):
        assert name == "nyu-mll/glue", name
        calls.append(config)
        names = list(get_task(config).labels)
        columns = GLUE_COLUMNS[config]
        features = Features({**{c: Value("string") for c in columns}, "label": ClassLabel(names=names),
                             "idx": Value("int32")})

        def split(count, offset, labeled=True):
            rows = {c: [f"{c} text {offset + i}" for i in range(count)] for c in columns}
            rows["label"] = [(offset + i) % len(names) if labeled else -1 for i in range(count)]
            rows["idx"] = list(range(count))
            return Dataset.from_dict(rows, features=features)

        splits = {"train": split(40, 0), "test": split(3, 0, labeled=False)}
        if config == "mnli":
            splits |= {"validation_matched": split(6, 100), "validation_mismatched": split(6, 200),
                       "test_matched": split(3, 0, labeled=False)}
        else:
            splits["validation"] = split(6, 100)
        return DatasetDict(splits)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_glue_validation_is_the_test_split_and_train_gives_validation(fake_glue, tiny_tokenizer):
    splits = load_task_splits(get_task("mnli"))
    assert fake_glue == ["mnli"]
    assert len(splits["test"]) == 6 and splits["test"]["premise"][0] == "premise text 100"  # matched
    assert len(splits["train"]) + len(splits["validation"]) == 40  # held out of train
    data = prepare_task_data([get_task("rte")], tiny_tokenizer, max_length=32)["rte"]
    assert data.labels == ["entailment", "not_entailment"]
    assert list(data.splits["test"]["labels"]) == [0, 1, 0, 1, 0, 1]  # ids 100.. mod 2
    assert data.splits["test"][0]["input_ids"].count(tiny_tokenizer.sep_token_id) == 2  # a pair


def test_local_glue_files_read_names_and_integer_labels(tmp_path, tiny_tokenizer):
    for task, header, rows in (
        ("rte", "sentence1\tsentence2\tlabel", ["anna visited york\tanna visited\tentailment",
                                                "acme corp\tanna\tnot_entailment"]),
        ("cola", "sentence\tlabel", ["anna visited york .\t1", "york anna visited\t0"]),
    ):
        folder = tmp_path / "glue" / task
        folder.mkdir(parents=True)
        body = "\n".join([header, *rows * 10]) + "\n"
        (folder / "train.tsv").write_text(body)
        (folder / "test.tsv").write_text("\n".join([header, *rows]) + "\n")
    data = prepare_task_data([get_task("rte"), get_task("cola")], tiny_tokenizer, max_length=32,
                             data_dir=str(tmp_path))
    assert list(data["rte"].splits["test"]["labels"]) == [0, 1]
    assert data["cola"].labels == ["unacceptable", "acceptable"]
    assert list(data["cola"].splits["test"]["labels"]) == [1, 0]


def test_glue_table_tunes_single_task_lr_on_validation_and_averages_seeds():
    from benchmarks.glue_tables import glue_summary

    def single(task, lr, seed, validation, metrics, wall=10.0):
        return {"task": task, "lr": lr, "seed": seed, "validation": validation, "metrics": {task: metrics},
                "wall_seconds": wall}

    results = {
        # rte: lr 1e-4 has the better mean validation (0.70 against 0.65) although its test is lower
        "single/rte/lr5e-05/seed1": single("rte", 5e-5, 1, 0.66, {"accuracy": 0.70}),
        "single/rte/lr5e-05/seed2": single("rte", 5e-5, 2, 0.64, {"accuracy": 0.72}),
        "single/rte/lr0.0001/seed1": single("rte", 1e-4, 1, 0.70, {"accuracy": 0.60}),
        "single/rte/lr0.0001/seed2": single("rte", 1e-4, 2, 0.70, {"accuracy": 0.64}),
        "single/mrpc/lr5e-05/seed1": single("mrpc", 5e-5, 1, 0.8, {"accuracy": 0.80, "f1": 0.90}),
        "single/mrpc/lr5e-05/seed2": single("mrpc", 5e-5, 2, 0.8, {"accuracy": 0.82, "f1": 0.88}),
        "multi/seed1": {"seed": 1, "wall_seconds": 30.0,
                        "metrics": {"rte": {"accuracy": 0.66}, "mrpc": {"accuracy": 0.84, "f1": 0.90}}},
        "multi/seed2": {"seed": 2, "wall_seconds": 34.0,
                        "metrics": {"rte": {"accuracy": 0.70}, "mrpc": {"accuracy": 0.86, "f1": 0.90}}},
    }
    lines = glue_summary(results, ["rte", "mrpc"]).splitlines()
    assert lines[0] == "| | rte | mrpc | GLUE avg | wall s | encoder passes |"
    # rte 0.60/0.64 -> 62.0 ± 2.8; mrpc 0.85/0.85 -> 85.0 ± 0.0; averages 0.725, 0.745 -> 73.5 ± 1.4
    assert lines[2] == ("| single-task (lr tuned on validation) | 62.0 ± 2.8 | 85.0 ± 0.0 | 73.5 ± 1.4 "
                        "| 20 | 2 |")
    # rte 0.66/0.70; mrpc 0.87/0.88; averages 0.765, 0.79
    assert lines[3] == "| multi-task (one model) | 68.0 ± 2.8 | 87.5 ± 0.7 | 77.8 ± 1.8 | 32 | 1 |"
    assert lines[-1] == "single-task learning rates chosen: rte 0.0001, mrpc 5e-05"


def test_glue_table_tunes_the_second_stage_lr_on_validation_as_single_task_runs_are():
    from benchmarks.glue_tables import glue_summary

    def run(arm, lr, seed, validation, accuracy, wall):
        return {f"{arm}/rte/lr{lr}/seed{seed}": {
            "task": "rte", "lr": lr, "seed": seed, "validation": validation,
            "metrics": {"rte": {"accuracy": accuracy}}, "wall_seconds": wall}}

    results = {**run("single", 1e-4, 1, 0.60, 0.61, 10.0),
               "multi/seed1": {"seed": 1, "wall_seconds": 30.0, "metrics": {"rte": {"accuracy": 0.64}}},
               # the second stage at 2e-4 validates best (0.68) although 5e-5 tests higher
               **run("finetune_lr", 5e-5, 1, 0.66, 0.70, 5.0), **run("finetune_lr", 2e-4, 1, 0.68, 0.65, 7.0)}
    lines = glue_summary(results, ["rte"]).splitlines()
    # wall: the multi-task run (30 s) and the chosen second stage (7 s)
    assert lines[4] == "| multi-task + finetune (lr tuned on validation) | 65.0 ± 0.0 | 65.0 ± 0.0 | 37 | 1 |"
    results["single/mrpc/lr0.0001/seed1"] = {
        "task": "mrpc", "lr": 1e-4, "seed": 1, "validation": 0.7, "wall_seconds": 1.0,
        "metrics": {"mrpc": {"accuracy": 0.8, "f1": 0.8}}}
    # a task whose second stage has not run yet: its cell and the average wait
    assert glue_summary(results, ["rte", "mrpc"]).splitlines()[4] == (
        "| multi-task + finetune (lr tuned on validation) | 65.0 ± 0.0 | - | - | 37 | 1 |")
    assert lines[-1] == "finetune learning rates chosen: rte 0.0002"
    assert lines[-3] == "single-task learning rates chosen: rte 0.0001"


def test_glue_table_chooses_lr_on_the_sweep_seeds_only():
    from benchmarks.glue_tables import tuned_single_task

    def single(lr, seed, validation, accuracy):
        return {"task": "rte", "lr": lr, "seed": seed, "validation": validation,
                "metrics": {"rte": {"accuracy": accuracy}}, "wall_seconds": 1.0}

    # seed 1 swept both rates and chose 1e-4 (0.70 against 0.66); seeds 2 and 3 ran 1e-4 alone and
    # scored lower on validation, which must not hand the choice to 5e-5's single seed
    runs = [single(5e-5, 1, 0.66, 0.60), single(1e-4, 1, 0.70, 0.62),
            single(1e-4, 2, 0.50, 0.64), single(1e-4, 3, 0.52, 0.66)]
    tuned = tuned_single_task(runs)["rte"]
    assert tuned["lr"] == 1e-4
    assert tuned["scores"] == {1: 0.62, 2: 0.64, 3: 0.66}


def test_glue_table_serves_each_task_from_the_side_that_validates_better():
    from benchmarks.glue_tables import glue_summary

    def run(arm, seed, validation, accuracy):
        return {f"{arm}/rte/lr0.0001/seed{seed}": {
            "task": "rte", "lr": 1e-4, "seed": seed, "validation": validation,
            "metrics": {"rte": {"accuracy": accuracy}}, "wall_seconds": 10.0}}

    # seed 1: the second stage validates better (0.70 > 0.60); seed 2: the single-task run (0.72 > 0.71);
    # seed 3: a tie, which keeps the second stage
    results = {**run("single", 1, 0.60, 0.61), **run("single", 2, 0.72, 0.66), **run("single", 3, 0.70, 0.50),
               **run("finetune_lr", 1, 0.70, 0.64), **run("finetune_lr", 2, 0.71, 0.62),
               **run("finetune_lr", 3, 0.70, 0.56),
               **{f"multi/seed{seed}": {"seed": seed, "wall_seconds": 30.0,
                                        "metrics": {"rte": {"accuracy": 0.6}}} for seed in (1, 2, 3)}}
    lines = glue_summary(results, ["rte"]).splitlines()
    # 0.64, 0.66, 0.56 -> 62.0 ± 5.3; wall: multi 30 + finetune 10 + single 10
    assert lines[5] == ("| multi-task + finetune, or single-task where it validates better | 62.0 ± 5.3 "
                        "| 62.0 ± 5.3 | 50 | 1 |")


def test_glue_table_shows_the_private_layers_arm_and_its_serving_cost():
    from benchmarks.glue_tables import glue_summary

    results = {f"private/seed{seed}": {"seed": seed, "private_layers": 2, "wall_seconds": wall,
                                       "metrics": {"rte": {"accuracy": accuracy}}}
               for seed, wall, accuracy in ((1, 40.0, 0.60), (2, 44.0, 0.64))}
    assert glue_summary(results, ["rte"]).splitlines()[2] == (
        "| multi-task, 2 private top layers per task | 62.0 ± 2.8 | 62.0 ± 2.8 | 42 "
        "| 1 shared + 2 layers per task |")


def test_lrs_from_takes_the_rate_another_benchmark_swept_whatever_its_seeds():
    from glue_benchmark import chosen_elsewhere

    def run(lr, seed, validation):
        return {f"single/rte/lr{lr}/seed{seed}": {"task": "rte", "lr": lr, "seed": seed,
                                                  "validation": validation}}

    # swept on seed 1 (1e-4 validates best there); seed 2 ran the chosen rate only
    other = {**run(5e-5, 1, 0.60), **run(1e-4, 1, 0.70), **run(1e-4, 2, 0.50)}
    assert chosen_elsewhere([5e-5, 1e-4], other, "rte", "single") == 1e-4
    assert chosen_elsewhere([5e-5, 1e-4, 2e-4], other, "rte", "single") is None  # 2e-4 never ran there
    assert chosen_elsewhere([5e-5, 1e-4], other, "mrpc", "single") is None


def test_overrides_reach_every_training_and_finetuning_run(tmp_path, monkeypatch):
    import argparse

    import glue_benchmark

    called = []
    monkeypatch.setattr(glue_benchmark, "run_cli",
                        lambda arguments, run_dir, fresh=True: called.append(arguments) or {})
    monkeypatch.setattr(glue_benchmark, "trained", lambda folder, wall: {})
    monkeypatch.setattr(glue_benchmark.shutil, "move", lambda source, target: None)
    args = argparse.Namespace(
        stages=["single", "multi", "finetune_lrs"], seeds=[1], lrs=[1e-4], sweep_seeds=1,
        lrs_from=None, subset=None, single_epochs=3.0, private_layers=2, probe_steps=300,
        data_dir="data", override=["train.eval_every=epoch"], task_lrs={})
    monkeypatch.setattr(glue_benchmark, "TASKS", ["rte"])
    for _, run in glue_benchmark.plan(args, tmp_path, {}):
        run()
    assert [arguments[0] for arguments in called] == ["train", "train", "finetune"]
    assert all(arguments[-1] == "train.eval_every=epoch" for arguments in called)
    assert called[2][-3:] == ["rte", "train.lr=0.0001", "train.eval_every=epoch"]


def test_the_distilled_arms_wait_for_the_seeds_teachers_and_name_them(tmp_path, monkeypatch):
    import argparse

    import glue_benchmark

    monkeypatch.setattr(glue_benchmark, "TASKS", ["rte", "mrpc"])
    args = argparse.Namespace(
        stages=["single", "distill", "distill_decay"], seeds=[1], lrs=[1e-4, 2e-4], sweep_seeds=1,
        lrs_from=None, subset=2000, single_epochs=3.0, private_layers=2, probe_steps=300,
        data_dir="data", override=[], task_lrs={"rte": 5e-5, "mrpc": 2e-4})
    keys = [key for key, _ in glue_benchmark.plan(args, tmp_path, {})]
    assert keys == ["single/rte/lr5e-05/seed1", "single/mrpc/lr0.0002/seed1"]  # no sweep; no teachers yet
    called = []
    monkeypatch.setattr(glue_benchmark, "run_cli",
                        lambda arguments, run_dir, fresh=True: called.append(arguments) or {})
    monkeypatch.setattr(glue_benchmark, "trained", lambda folder, wall: {})
    done = {key: {} for key in keys}
    for _, run in glue_benchmark.plan(args, tmp_path, done):
        run()
    teachers = [f"distill.teachers.rte={tmp_path / 'runs' / 'single-rte-lr5e-05-seed1'}",
                f"distill.teachers.mrpc={tmp_path / 'runs' / 'single-mrpc-lr0.0002-seed1'}"]
    assert [arguments[-2:] for arguments in called] == [teachers, teachers]
    assert "train.layer_lr_decay=0.9" in called[1] and "train.layer_lr_decay=0.9" not in called[0]
    assert f"output_dir={tmp_path / 'runs' / 'distill-seed1'}" in called[0]


def test_each_tasks_own_parameters_are_its_head_and_its_adapter(tmp_path, monkeypatch):
    import glue_benchmark
    import torch
    from safetensors.torch import save_file

    monkeypatch.setattr(glue_benchmark, "TASKS", ["rte", "mrpc"])
    save_file({"rte.classifier.weight": torch.zeros(2, 8), "rte.classifier.bias": torch.zeros(2),
               "mrpc.classifier.weight": torch.zeros(2, 8), "mrpc.classifier.bias": torch.zeros(2)},
              tmp_path / "heads.safetensors")
    adapter = tmp_path / "adapters" / "rte"
    adapter.mkdir(parents=True)
    save_file({"lora_A": torch.zeros(4, 8), "lora_B": torch.zeros(8, 4)},
              adapter / "adapter_model.safetensors")
    assert glue_benchmark.task_parameters(tmp_path) == {"rte": 18 + 64, "mrpc": 18}
