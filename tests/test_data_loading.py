import logging
import re

import pytest

from mtl_nlp import DataError, TaskError, TaskSpec, get_task
from mtl_nlp.data.features import IGNORE_INDEX, align_word_labels
from mtl_nlp.data.loading import load_task_splits
from mtl_nlp.data.pipeline import prepare_task_data


def write(path, text):
    path.write_text(text)
    return str(path)


def tsv_task(tmp_path, train, test=None, validation=None, **kwargs):
    files = {"train": write(tmp_path / "train.tsv", train)}
    if test is not None:
        files["test"] = write(tmp_path / "test.tsv", test)
    if validation is not None:
        files["validation"] = write(tmp_path / "validation.tsv", validation)
    return TaskSpec(name="cls", type="classification", data_files=files, format="tsv", **kwargs)


def test_align_word_labels_first_subword_only():
    #           [CLS] an ##na schm ##idt visited [SEP]
    word_ids = [None, 0, 0, 1, 1, 2, None]
    assert align_word_labels(word_ids, [1, 2, 0]) == [
        IGNORE_INDEX, 1, IGNORE_INDEX, 2, IGNORE_INDEX, 0, IGNORE_INDEX
    ]


def test_token_labels_aligned_on_a_hand_made_sentence(tmp_path, tiny_tokenizer):
    conll = "Anna B-PER\nSchmidt I-PER\nvisited O\nNew B-LOC\nYorkers I-LOC\n. O\n"
    spec = TaskSpec(name="ner", type="token_classification", format="conll",
                    data_files={"train": write(tmp_path / "train.txt", conll),
                                "validation": str(tmp_path / "train.txt")})
    data = prepare_task_data([spec], tiny_tokenizer, max_length=32)["ner"]
    assert data.labels == ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]  # sorted training labels
    row = data.splits["train"][0]
    tokens = tiny_tokenizer.convert_ids_to_tokens(row["input_ids"])
    assert tokens == ["[CLS]", "an", "##na", "schm", "##idt", "visited", "new", "york", "##er", "##s",
                      ".", "[SEP]"]
    B_LOC, B_PER, I_LOC, I_PER, OUT = range(5)
    X = IGNORE_INDEX
    assert row["labels"] == [X, B_PER, X, I_PER, X, OUT, B_LOC, I_LOC, X, X, OUT, X]
    assert row["length"] == 12


def test_classification_labels_from_names_and_integer_indices(tmp_path, tiny_tokenizer):
    spec = tsv_task(tmp_path, "text\tlabel\ngood film\t1\nbad film\t0\n",
                    labels=("negative", "positive"))
    data = prepare_task_data([spec], tiny_tokenizer, max_length=16)["cls"]
    assert data.labels == ["negative", "positive"]
    labels = list(data.splits["train"]["labels"]) + list(data.splits["validation"]["labels"])
    assert sorted(labels) == [0, 1]


def test_held_out_validation_when_missing(tmp_path, caplog):
    rows = "".join(f"text {i}\t{'ab'[i % 2]}\n" for i in range(40))
    with caplog.at_level("INFO"):
        splits = load_task_splits(tsv_task(tmp_path, "text\tlabel\n" + rows), seed=1)
    assert (len(splits["train"]), len(splits["validation"])) == (38, 2)
    # Two validation rows make model selection mostly chance: that is a warning, not an INFO line.
    warning = [r for r in caplog.records if r.levelname == "WARNING" and "held out" in r.getMessage()]
    assert len(warning) == 1 and "only 2 of its 40 training examples" in warning[0].getMessage()
    again = load_task_splits(tsv_task(tmp_path, "text\tlabel\n" + rows), seed=1)
    assert list(again["validation"]["text"]) == list(splits["validation"]["text"])


def test_missing_file_names_task_split_and_path(tmp_path):
    spec = TaskSpec(name="cls", type="classification", format="csv",
                    data_files={"train": str(tmp_path / "nope.csv")})
    with pytest.raises(DataError, match=rf"task 'cls': train data file not found: {tmp_path}/nope.csv"):
        load_task_splits(spec)


def test_relative_files_resolve_against_data_dir(tmp_path):
    write(tmp_path / "train.tsv", "text\tlabel\na\tx\nb\ty\n")
    spec = TaskSpec(name="cls", type="classification", format="tsv",
                    data_files={"train": "train.tsv", "dev": "train.tsv"})
    splits = load_task_splits(spec, data_dir=str(tmp_path))
    assert set(splits) == {"train", "validation"} and len(splits["validation"]) == 2


def test_missing_column_lists_existing_columns(tmp_path, tiny_tokenizer):
    spec = tsv_task(tmp_path, "sentence\tlabel\ngood\tpos\nbad\tneg\n")
    with pytest.raises(DataError, match=r"column 'text' not found; columns: sentence, label"):
        prepare_task_data([spec], tiny_tokenizer, max_length=16)


def test_a_label_column_typo_is_one_data_error_like_a_text_column_typo(tmp_path, tiny_tokenizer):
    spec = tsv_task(tmp_path, "text\tlabel\ngood\tpos\nbad\tneg\n")
    typo = TaskSpec(**{**spec.__dict__, "label_column": "labl"})
    with pytest.raises(DataError, match=r"^task 'cls', split train: column 'labl' not found; columns: text, "
                                        r"label"):
        prepare_task_data([typo], tiny_tokenizer, max_length=16)


def test_a_null_column_name_is_refused_by_key():
    message = "task 't': label_column must be text (a column name or a choice), got null; leave it out for"
    with pytest.raises(TaskError, match=re.escape(message + " its default 'label'")):
        TaskSpec.from_dict({"name": "t", "type": "classification", "dataset": "x", "label_column": None})


def test_label_only_in_test_split_is_named_and_scored_as_an_error(tmp_path, tiny_tokenizer, caplog):
    spec = tsv_task(tmp_path, "text\tlabel\ngood\tpos\nbad\tneg\nok\tpos\n",
                    test="text\tlabel\nfine\tpos\nmeh\tmaybe\n")
    with caplog.at_level(logging.WARNING):
        data = prepare_task_data([spec], tiny_tokenizer, max_length=16)["cls"]
    assert "task cls, split test: 1 label occurrence(s) never seen in training, scored as errors: " \
           "maybe x1" in caplog.text
    assert data.labels == ["neg", "pos"] and list(data.splits["test"]["labels"]) == [1, 2]


def test_unknown_tag_in_conll_names_the_line(tmp_path, tiny_tokenizer):
    spec = TaskSpec(
        name="ner", type="token_classification", format="conll", labels=("O", "B-PER"),
        data_files={"train": write(tmp_path / "train.txt", "Anna B-PER\n\nNew B-LOC\n"),
                    "validation": str(tmp_path / "train.txt")},
    )
    with pytest.raises(DataError, match=r"sentence at line 3: label 'B-LOC' is not in the task's label "
                                        r"set: O, B-PER"):
        prepare_task_data([spec], tiny_tokenizer, max_length=16)


def test_empty_texts_are_dropped_and_counted(tmp_path, tiny_tokenizer, caplog):
    spec = tsv_task(tmp_path, "text\tlabel\ngood\tpos\n\tneg\n   \tneg\nbad\tneg\n",
                    validation="text\tlabel\nfine\tpos\n")
    with caplog.at_level(logging.WARNING):
        data = prepare_task_data([spec], tiny_tokenizer, max_length=16)["cls"]
    assert "task cls, split train: dropped 2 of 4 examples with empty or missing text" in caplog.text
    assert list(data.splits["train"]["labels"]) == [1, 0]


def test_malformed_tsv_row_names_the_file(tmp_path, tiny_tokenizer):
    spec = tsv_task(tmp_path, "text\tlabel\ngood\tpos\nbad\tneg\textra\n")
    with pytest.raises(DataError, match=r"train\.tsv line 3: 3 fields where the header has 2"):
        load_task_splits(spec)


def test_limit_examples_takes_seeded_train_subset_and_first_eval_rows(tmp_path):
    from mtl_nlp.data.pipeline import limit_examples

    rows = "".join(f"text {i}\tx\n" for i in range(30))
    spec = tsv_task(tmp_path, "text\tlabel\n" + rows, test="text\tlabel\n" + rows,
                    validation="text\tlabel\n" + rows)
    splits = load_task_splits(spec)
    limited = limit_examples(splits, max_train=5, max_eval=3, seed=0)
    assert len(limited["train"]) == 5 and list(limited["test"]["text"]) == ["text 0", "text 1", "text 2"]
    assert list(limit_examples(splits, 5, 3, seed=0)["train"]["text"]) == list(limited["train"]["text"])
    assert list(limited["train"]["text"]) != [f"text {i}" for i in range(5)]


def test_conll_line_without_tag_names_file_and_line_through_the_loader(tmp_path):
    path = write(tmp_path / "train.txt", "EU B-ORG\nrejects\n\n")
    spec = TaskSpec(name="ner", type="token_classification", format="conll", data_files={"train": path})
    with pytest.raises(DataError, match=rf"task 'ner': {path}:2: line 'rejects' has no tag column"):
        load_task_splits(spec)


def test_same_conll_file_under_other_column_names_is_not_served_from_the_cache(tmp_path):
    path = write(tmp_path / "train.txt", "EU B-ORG\nrejects O\n\nGerman B-MISC\n")
    files = {"train": path, "validation": path}
    first = TaskSpec(name="a", type="token_classification", format="conll", data_files=files)
    second = TaskSpec(name="b", type="token_classification", format="conll", data_files=files,
                      tokens_column="words", tags_column="ner")
    cache = str(tmp_path / "cache")
    assert load_task_splits(first, cache_dir=cache)["train"].column_names == ["tokens", "tags", "line"]
    assert load_task_splits(second, cache_dir=cache)["train"].column_names == ["words", "ner", "line"]


@pytest.mark.parametrize("labels", [None, ("0", "1")])
def test_missing_label_names_split_and_row(tmp_path, tiny_tokenizer, labels):
    spec = tsv_task(tmp_path, "text\tlabel\ngood\t1\nbad\t\nfine\t0\n", validation="text\tlabel\nok\t1\n",
                    labels=labels)
    with pytest.raises(DataError, match=r"task 'cls', split train, line 3: the label is missing"):
        prepare_task_data([spec], tiny_tokenizer, max_length=16)


def test_a_task_entry_limits_its_own_training_examples(tmp_path, tiny_tokenizer):
    rows = "".join(f"anna {i}\tpos\n" for i in range(30))
    spec = tsv_task(tmp_path, "text\tlabel\n" + rows, validation="text\tlabel\n" + rows, max_train_examples=7)
    other = TaskSpec(name="other", type="classification", format="tsv",
                     data_files={"train": str(tmp_path / "train.tsv"),
                                 "validation": str(tmp_path / "validation.tsv")})
    prepared = prepare_task_data([spec, other], tiny_tokenizer, 16, cache_dir=str(tmp_path / "c"))
    assert len(prepared["cls"].splits["train"]) == 7 and len(prepared["other"].splits["train"]) == 30
    both = prepare_task_data([spec, other], tiny_tokenizer, 16, cache_dir=str(tmp_path / "c"),
                             max_train_examples=4)
    assert [len(both[name].splits["train"]) for name in ("cls", "other")] == [4, 4]
    with pytest.raises(Exception, match="max_train_examples must be positive, got 0"):
        TaskSpec(name="x", type="classification", dataset="d", max_train_examples=0)


def test_data_errors_name_the_file_line_after_blank_lines_quoted_cells_and_hold_out(tmp_path, tiny_tokenizer):
    # 30 rows and no validation file: a held-out split shuffles the rows first. Line 1 is the
    # header, a blank line and a cell spanning two lines come before the broken row.
    rows = ["text,label", "good,pos", "", '"a film\nin two lines",neg']
    rows += [f"row {i},{'pos' if i % 2 else 'neg'}" for i in range(25)]
    rows.insert(10, "no label here,")  # file line 12: the quoted cell takes lines 4 and 5
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    spec = TaskSpec(name="cls", type="classification", format="csv",
                    data_files={"train": str(tmp_path / "train.csv")})
    with pytest.raises(DataError, match=r"task 'cls', split \w+, line 12: the label is missing"):
        prepare_task_data([spec], tiny_tokenizer, max_length=16)


@pytest.mark.parametrize("tag", ["S-PER", "E-LOC", "PER", "B-"])
def test_tags_that_are_not_bio_are_refused_naming_them(tmp_path, tiny_tokenizer, tag):
    (tmp_path / "train.txt").write_text(f"Anna {tag}\nlives O\n\nBerlin B-LOC\n")
    path = str(tmp_path / "train.txt")
    spec = TaskSpec(name="ner", type="token_classification", format="conll",
                    data_files={"train": path, "validation": path})
    with pytest.raises(DataError, match=rf"task 'ner': tags '{tag}' are not BIO tags .*convert IOBES"):
        prepare_task_data([spec], tiny_tokenizer, max_length=16)


def test_a_row_with_an_unquoted_delimiter_names_the_file_and_line(tmp_path):
    rows = "text,label\n" + "".join(f"row {i},pos\n" for i in range(5)) + "good, really good,pos\nlast,neg\n"
    (tmp_path / "train.csv").write_text(rows)
    spec = TaskSpec(name="cls", type="classification", format="csv",
                    data_files={"train": str(tmp_path / "train.csv")})
    expected = rf"task 'cls': {tmp_path}/train.csv line 7: 3 fields where the header has 2; quote a cell"
    with pytest.raises(DataError, match=expected):
        load_task_splits(spec)


def test_a_json_text_that_is_nan_names_its_line(tmp_path):
    from mtl_nlp.data.loading import load_task_splits

    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"text": "", "label": "pos"}\n{"text": NaN, "label": "x"}\n')
    spec = TaskSpec(name="cls", type="classification", format="json",
                    data_files={"train": str(path), "validation": str(path)})
    with pytest.raises(DataError, match=r"t.jsonl line 2: not valid JSON: NaN is not valid JSON"):
        load_task_splits(spec, cache_dir=str(tmp_path / "cache"))


def test_an_unreachable_hub_dataset_is_one_line_naming_it_and_the_offline_ways(monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'eriktks/conll2003' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr("datasets.load_dataset", unreachable)
    message = ("task 'conll2003': cannot load dataset 'eriktks/conll2003' from the Hugging Face Hub: "
               "Couldn't reach 'eriktks/conll2003' on the Hub (LocalEntryNotFoundError); without a network, "
               "set data_dir= to a folder of local copies (this task reads conll2003/test.txt, "
               "conll2003/train.txt, conll2003/valid.txt there), or, when the dataset is in the datasets "
               "cache already, set HF_DATASETS_OFFLINE=1 and HF_HUB_OFFLINE=1")
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        load_task_splits(get_task("conll2003"))
