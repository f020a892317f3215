"""Sentence pairs, regression and multilabel targets through loading, labels and tokenization."""

import json
import logging
import math

import pytest
import torch

from mtl_nlp import DataError, TaskSpec, get_task
from mtl_nlp.data.features import encode_texts
from mtl_nlp.data.labels import FloatMapper, split_labels
from mtl_nlp.data.loading import load_task_splits
from mtl_nlp.data.pipeline import build_collator, prepare_task_data
from mtl_nlp.registry import TaskError


def write(path, text):
    path.write_text(text)
    return str(path)


def prepare(spec, tokenizer, tmp_path, max_length=32):
    return prepare_task_data([spec], tokenizer, max_length, cache_dir=str(tmp_path / "cache"))[spec.name]


def test_split_labels_reads_lists_separated_strings_and_empty_cells():
    assert split_labels(["b", " a "], ",") == ["b", "a"]
    assert split_labels("acting, script ,cast", ",") == ["acting", "script", "cast"]
    assert split_labels("x|y", "|") == ["x", "y"]
    assert split_labels("", ",") == []
    assert split_labels("  ", ",") == []
    assert split_labels(None, ",") == []
    assert split_labels(math.nan, ",") == []
    assert split_labels([], ",") == []
    assert split_labels(3.0, ",") == [3]  # a lone class index read as a float by the CSV reader


def test_float_mapper_reads_numbers_and_names_bad_labels():
    mapper = FloatMapper("sim")
    assert mapper("3.25", "split train, row 0") == 3.25
    assert mapper(4, "split train, row 0") == 4.0 and isinstance(mapper(4, "x"), float)
    with pytest.raises(DataError, match=r"task 'sim', split dev, row 3: label 'high' is not a number"):
        mapper("high", "split dev, row 3")
    with pytest.raises(DataError, match=r"task 'sim', split train, row 1: the label is missing"):
        mapper(None, "split train, row 1")
    with pytest.raises(DataError, match=r"label True is not a number"):
        mapper(True, "split train, row 1")
    with pytest.raises(DataError, match=r"label 'inf' is not a number"):
        mapper("inf", "split train, row 1")


def test_multilabel_from_a_separated_string_column(tmp_path, tiny_tokenizer):
    train = "text\tlabel\nthe film is dull\tscript, acting\nthe story\t\nthe cast\tcast\n"
    spec = TaskSpec(name="aspects", type="multilabel", format="tsv",
                    data_files={"train": write(tmp_path / "train.tsv", train),
                                "validation": str(tmp_path / "train.tsv")})
    data = prepare(spec, tiny_tokenizer, tmp_path)
    assert data.labels == ["acting", "cast", "script"]  # sorted training labels
    assert data.splits["train"]["labels"] == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_multilabel_from_a_json_list_column_with_named_labels(tmp_path, tiny_tokenizer):
    rows = [{"text": "the film", "tags": ["b", "a"]}, {"text": "the story", "tags": []}]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    spec = TaskSpec(name="tags", type="multilabel", format="json", label_column="tags",
                    labels=("c", "b", "a"), data_files={"train": str(path), "validation": str(path)})
    data = prepare(spec, tiny_tokenizer, tmp_path)
    assert data.labels == ["c", "b", "a"]
    assert data.splits["validation"]["labels"] == [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]


def test_multilabel_label_only_in_validation_is_named_and_missed(tmp_path, tiny_tokenizer, caplog):
    spec = TaskSpec(name="aspects", type="multilabel", format="tsv", data_files={
        "train": write(tmp_path / "train.tsv", "text\tlabel\nthe film\tacting\nthe cast\tcast\n"),
        "validation": write(tmp_path / "dev.tsv", "text\tlabel\nthe film\tacting\nthe story\tcast;plot\n"),
    })
    with caplog.at_level(logging.WARNING):
        data = prepare(spec, tiny_tokenizer, tmp_path)
    assert "never seen in training, scored as errors: cast;plot x1" in caplog.text  # a wrong separator
    assert data.labels == ["acting", "cast"]
    assert list(data.splits["validation"]["labels"]) == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def test_regression_labels_are_floats_and_a_bad_one_is_named(tmp_path, tiny_tokenizer):
    train = write(tmp_path / "train.tsv", "text\tscore\nthe film\t4.5\nthe story\t0\n")
    spec = TaskSpec(name="sim", type="regression", format="tsv", label_column="score",
                    data_files={"train": train, "validation": train})
    data = prepare(spec, tiny_tokenizer, tmp_path)
    assert data.labels == []
    assert data.splits["train"]["labels"] == [4.5, 0.0]
    bad_train = write(tmp_path / "bad.tsv", "text\tscore\nthe film\t1\nthe cast\tn/a\n")
    bad = TaskSpec(name="bad", type="regression", format="tsv", label_column="score",
                   data_files={"train": bad_train, "validation": train})
    with pytest.raises(DataError, match=r"task 'bad', split train, line 3: label 'n/a' is not a number"):
        prepare(bad, tiny_tokenizer, tmp_path)


def test_pair_encoding_marks_the_second_text_and_truncates_the_longer_first(pair_tokenizer):
    long_text, short_pair = "the film is dull and far too long .", "the story"  # 9 and 2 tokens
    encoded = encode_texts(pair_tokenizer, [long_text], [short_pair], max_length=10)
    assert pair_tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]) == [
        "[CLS]", "the", "film", "is", "dull", "and", "[SEP]", "the", "story", "[SEP]"
    ]
    assert encoded["token_type_ids"][0] == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    # Both long: the longer is cut to the other's length, then they lose tokens in turn.
    encoded = encode_texts(pair_tokenizer, [long_text], ["the story is dull"], max_length=10)
    assert pair_tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]) == [
        "[CLS]", "the", "film", "is", "dull", "[SEP]", "the", "story", "is", "[SEP]"
    ]


def test_pair_task_drops_rows_missing_a_text_and_names_a_missing_column(tmp_path, pair_tokenizer):
    train = write(tmp_path / "train.tsv", "a\tb\tscore\nthe film\tthe story\t1.5\nthe cast\t\t2\n"
                  "\tthe story\t3\nthe film is dull\tthe cast\t4\n")
    spec = TaskSpec(name="sim", type="regression", format="tsv", text_column="a",
                    text_pair_column="b", label_column="score",
                    data_files={"train": train, "validation": train})
    rows = prepare(spec, pair_tokenizer, tmp_path).splits["train"]
    assert rows["labels"] == [1.5, 4.0]
    assert [pair_tokenizer.decode(ids) for ids in rows["input_ids"]] == [
        "[CLS] the film [SEP] the story [SEP]", "[CLS] the film is dull [SEP] the cast [SEP]"
    ]
    assert rows["token_type_ids"][0] == [0, 0, 0, 0, 1, 1, 1]
    missing = TaskSpec(name="nli", type="classification", format="tsv", text_column="a",
                       text_pair_column="hypothesis", label_column="score",
                       data_files={"train": train, "validation": train})
    with pytest.raises(DataError, match=r"task 'nli', split train: column 'hypothesis' not found; "
                                        r"columns: a, b, score"):
        prepare(missing, pair_tokenizer, tmp_path)


def test_collator_gives_float_targets_for_regression_and_multilabel(pair_tokenizer):
    collate = build_collator("regression", pair_tokenizer)
    features = [dict(pair_tokenizer("the film", "the story"), labels=4.5),
                dict(pair_tokenizer("the film is dull", "the cast"), labels=0.0)]
    batch = collate(features)
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [4.5, 0.0]
    assert batch["input_ids"].shape == batch["token_type_ids"].shape == (2, 9)
    collate = build_collator("multilabel", pair_tokenizer)
    batch = collate([dict(pair_tokenizer("the film"), labels=[1.0, 0.0, 1.0]),
                     dict(pair_tokenizer("the story is dull"), labels=[0.0, 0.0, 0.0])])
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]


def test_stsb_reads_quoted_fields_from_its_local_files(tmp_path):
    folder = tmp_path / "stsb"
    folder.mkdir()
    header = "sentence1\tsentence2\tscore\n"
    (folder / "train.tsv").write_text(
        header + '"A dog in a ""superman"" shirt."\tA dog in a shirt.\t4.000\n'
        'A man plays.\t"He said ""hi""."\t0.5\n'
    )
    (folder / "dev.tsv").write_text(header + "A plane.\tAn air plane.\t5.000\n")
    (folder / "test.tsv").write_text(header + 'It is "fine".\tIt is fine.\t3\n')
    splits = load_task_splits(get_task("stsb"), data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 2, "validation": 1, "test": 1}
    assert splits["train"]["sentence1"] == ['A dog in a "superman" shirt.', "A man plays."]
    assert splits["train"]["sentence2"] == ["A dog in a shirt.", 'He said "hi".']
    assert splits["train"]["score"] == [4.0, 0.5]
    assert splits["test"]["sentence1"] == ['It is "fine".']  # quotes inside a field stay text


def test_plain_tsv_keeps_quote_characters_as_text(tmp_path):
    path = write(tmp_path / "train.tsv", 'text\tlabel\n"quoted" start\t1\n')
    spec = TaskSpec(name="cls", type="classification", format="tsv",
                    data_files={"train": path, "validation": path})
    assert load_task_splits(spec, cache_dir=str(tmp_path / "c"))["train"]["text"] == ['"quoted" start']


def test_stsb_entry_and_spec_checks():
    stsb = get_task("stsb")
    assert (stsb.type, stsb.text_column, stsb.text_pair_column, stsb.label_column) == (
        "regression", "sentence1", "sentence2", "score")
    assert stsb.dataset == "mteb/stsbenchmark-sts" and stsb.local_format == "tsv_quoted"
    with pytest.raises(TaskError, match="token_classification reads lists of words"):
        TaskSpec(name="t", type="token_classification", data_files={"train": "x"}, format="tsv_quoted")
    with pytest.raises(TaskError, match="text_pair_column needs a sentence-level type"):
        TaskSpec(name="t", type="token_classification", data_files={"train": "x"}, format="conll",
                 text_pair_column="b")
