"""Loading built-in tasks by Hub id, with `datasets.load_dataset` replaced by local fakes."""

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from mtl_nlp import get_task
from mtl_nlp.common.errors import DataError
from mtl_nlp.data.loading import load_task_splits
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.tasks.builtin import CONLL_TAGS


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []
    real_load_dataset = datasets.load_dataset

    def load_dataset(name, config=None, cache_dir=None, **kwargs):
        if "/" not in name:  # packaged builders (csv, json) read local files as usual
            return real_load_dataset(name, config, cache_dir=cache_dir, **kwargs)
        calls.append((name, config))
        if name == "stanfordnlp/sst2":
            features = Features({"idx": Value("int32"), "sentence": Value("string"),
                                 "label": ClassLabel(names=["negative", "positive"])})
            rows = {"idx": [0, 1], "sentence": ["a dull film ", "a wonderful film "], "label": [0, 1]}
            unlabeled = {"idx": [2], "sentence": ["the film"], "label": [-1]}
            return DatasetDict({
                "train": Dataset.from_dict(rows, features=features),
                "validation": Dataset.from_dict(rows, features=features),
                "test": Dataset.from_dict(unlabeled, features=features),
            })
        if name == "eriktks/conll2003":
            features = Features({"tokens": Sequence(Value("string")),
                                 "ner_tags": Sequence(ClassLabel(names=list(CONLL_TAGS)))})
            rows = {"tokens": [["Anna", "visited", "Berlin"]], "ner_tags": [[1, 0, 5]]}
            split = Dataset.from_dict(rows, features=features)
            return DatasetDict({"train": split, "validation": split, "test": split})
        raise AssertionError(f"unexpected Hub id {name}")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_sst2_from_hub_scores_on_validation_and_selects_on_held_out_train(fake_hub, tiny_tokenizer):
    data = prepare_task_data([get_task("sst2")], tiny_tokenizer, max_length=16)["sst2"]
    assert fake_hub == [("stanfordnlp/sst2", None)]
    assert set(data.splits) == {"train", "validation", "test"} and data.eval_split == "test"
    assert (len(data.splits["train"]), len(data.splits["validation"]), len(data.splits["test"])) == (1, 1, 2)
    assert list(data.splits["test"]["labels"]) == [0, 1]  # the Hub's labeled validation rows


def test_conll_from_hub_reads_classlabel_sequences(fake_hub, tiny_tokenizer):
    data = prepare_task_data([get_task("conll2003")], tiny_tokenizer, max_length=16)["conll2003"]
    assert data.labels == list(CONLL_TAGS)
    #                                          [CLS] an  ##na visited berlin [SEP]
    assert list(data.splits["test"][0]["labels"]) == [-100, 1, -100, 0, 5, -100]


def test_hub_split_mapping_names_missing_split(fake_hub):
    from mtl_nlp import TaskSpec

    spec = TaskSpec(name="x", type="classification", dataset="stanfordnlp/sst2",
                    splits={"train": "training"})
    with pytest.raises(DataError, match="has no split 'training' \\(splits: train, validation, test\\)"):
        load_task_splits(spec)


def test_data_dir_takes_precedence_for_builtin_tasks(tmp_path, fake_hub):
    (tmp_path / "sst2").mkdir()
    for name in ("train", "dev", "test"):
        (tmp_path / "sst2" / f"{name}.tsv").write_text("sentence\tlabel\ngood \t1\nbad \t0\n")
    splits = load_task_splits(get_task("sst2"), data_dir=str(tmp_path))
    assert fake_hub == [] and set(splits) == {"train", "validation", "test"}
