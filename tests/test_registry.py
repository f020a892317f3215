import re

import pytest
from datasets import DatasetDict

from mtl_nlp import TaskError, TaskSpec, get_task, list_tasks, register_task, resolve_tasks
from mtl_nlp.data.pipeline import TaskData
from mtl_nlp.modeling.heads import HeadConfig
from mtl_nlp.training.setup import head_configs


def spec(name="my_task", **kwargs):
    fields = {"type": "classification", "data_files": {"train": "x.csv"}, "format": "csv"}
    return TaskSpec(name=name, **{**fields, **kwargs})


def test_builtin_tasks_registered():
    assert {"conll2003", "sst2", "ag_news", "demo_ner", "demo_sentiment", "demo_topic"} <= set(list_tasks())
    assert get_task("conll2003").type == "token_classification"
    assert get_task("sst2").labels == ("negative", "positive")


def test_register_and_get():
    register_task(spec())
    assert get_task("my_task") == spec()


def test_duplicate_registration_raises():
    register_task(spec())
    with pytest.raises(TaskError, match="task 'my_task' is already registered"):
        register_task(spec())


def test_unknown_task_lists_registered_names():
    with pytest.raises(TaskError, match=r"unknown task 'nope'; registered tasks: .*ag_news, cola, "
                                        "commonsense_qa, conll2003"):
        get_task("nope")


def test_bad_type_lists_types():
    expected = "type 'ranking' is not one of: classification, token_classification, regression, multilabel"
    with pytest.raises(TaskError, match=expected):
        spec(type="ranking")


@pytest.mark.parametrize("weight", [0, -1.0, "2", True, None])
def test_loss_weight_must_be_a_positive_number(weight):
    with pytest.raises(TaskError, match=f"loss_weight must be a positive number, got {weight!r}"):
        spec(loss_weight=weight)


def test_data_files_need_a_format():
    with pytest.raises(TaskError, match="data_files needs a format"):
        TaskSpec(name="t", type="classification", data_files={"train": "a.csv"})


def test_needs_a_data_source():
    with pytest.raises(TaskError, match="give `dataset`"):
        TaskSpec(name="t", type="classification")


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(TaskError, match=r"task 't': unknown key\(s\) text_col; valid keys: .*text_column"):
        TaskSpec.from_dict({"name": "t", "type": "classification", "dataset": "x", "text_col": "a"})


def test_resolve_tasks_registers_inline_entries():
    entry = {"name": "inline", "type": "token_classification", "data_files": {"train": "a.txt"},
             "format": "conll", "labels": ["O", "B-X"]}
    specs = resolve_tasks(["sst2", entry])
    assert [s.name for s in specs] == ["sst2", "inline"]
    assert get_task("inline").labels == ("O", "B-X")
    # The same inline entry again (e.g. the config read twice) is accepted, a different one is not.
    assert resolve_tasks([entry])[0] == specs[1]
    with pytest.raises(TaskError, match="already registered"):
        resolve_tasks([{**entry, "labels": ["O"]}])


def test_resolve_tasks_rejects_a_repeated_name():
    with pytest.raises(TaskError, match="listed twice"):
        resolve_tasks(["sst2", "sst2"])


def test_tagging_task_from_csv_is_refused_with_the_formats_that_work():
    with pytest.raises(TaskError, match="task 'ner': token_classification reads lists of words and tags; "
                                        "use format conll or json"):
        TaskSpec(name="ner", type="token_classification", format="tsv", data_files={"train": "t.tsv"})


def test_pooling_is_checked_and_reaches_the_head():
    with pytest.raises(TaskError, match="task 't': pooling 'max' is not one of: mean, cls"):
        TaskSpec(name="t", type="classification", dataset="x/y", pooling="max")
    spec = TaskSpec(name="t", type="classification", dataset="x/y", pooling="cls")
    data = TaskData(spec=spec, splits=DatasetDict(), labels=["a", "b"])
    assert head_configs({"t": data}) == [HeadConfig(name="t", type="classification", labels=["a", "b"],
                                                    pooling="cls")]


def test_a_mapping_naming_a_registered_task_changes_fields_for_the_run_only():
    original = get_task("conll2003")
    (changed,) = resolve_tasks([{"name": "conll2003", "layer": 3, "max_train_examples": 100}])
    assert changed.layer == 3 and changed.max_train_examples == 100
    assert changed.local_files == original.local_files and changed.labels == original.labels
    assert get_task("conll2003") == original
    with pytest.raises(TaskError, match=r"task 'conll2003': unknown key\(s\) layers; valid keys: .*layer"):
        resolve_tasks([{"name": "conll2003", "layers": 3}])
    with pytest.raises(TaskError, match="layer must be an encoder layer number from 1, got 0"):
        resolve_tasks([{"name": "conll2003", "layer": 0}])


@pytest.mark.parametrize(("changes", "message"), [
    ({"threshold": "5e-1"}, "threshold must be a number, got '5e-1' (YAML reads 5e-1 as text; write 0.5)"),
    ({"threshold": "half"}, "threshold must be a number, got 'half'"),
    ({"labels": "pos"}, "labels must be a list of label names, e.g. [negative, positive]; got 'pos'"),
    ({"labels": [["a"], "b"]}, "labels must be a list of label names"),
    ({"data_files": "train.csv", "format": "csv"},
     "data_files must map split names to file paths, e.g. {train: train.csv, test: test.csv}; "
     "got 'train.csv'"),
    ({"splits": {"train": 1}}, "splits must map split names to source split names"),
    ({"text_column": 3}, "text_column must be text, got 3"),
    ({"layer": "2"}, "layer must be a whole number, got '2'"),
    ({"max_train_examples": 1.5}, "max_train_examples must be a whole number, got 1.5"),
    ({"streaming": "yes"}, "streaming must be true or false, got 'yes'"),
])
def test_entry_values_of_the_wrong_kind_name_key_and_value(changes, message):
    with pytest.raises(TaskError, match=re.escape(message)):
        TaskSpec.from_dict({"name": "my_task", "type": "classification", "dataset": "x", **changes})
