"""Streamed training tasks (`streaming: true`): batches read lazily from the file, mixed with
in-memory tasks, every process yielding the same number of batches per epoch."""

import json

import pytest
from datasets import Dataset
from transformers import DataCollatorWithPadding

from mtl_nlp.common.errors import DataError
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.data.streaming import StreamingBatches
from mtl_nlp.registry import TaskError, TaskSpec


def feature_stream(count: int):
    """An IterableDataset of `count` tokenized rows; example i has i % 7 + 1 tokens and label i."""
    rows = {"input_ids": [[5] * (i % 7 + 1) for i in range(count)],
            "attention_mask": [[1] * (i % 7 + 1) for i in range(count)],
            "labels": list(range(count))}
    return Dataset.from_dict(rows).to_iterable_dataset(num_shards=1)


def labels_of(batches):
    return [int(label) for batch in batches for label in batch["labels"]]


@pytest.fixture
def collate(tiny_tokenizer):
    return DataCollatorWithPadding(tiny_tokenizer)


def batches(stream, epoch=0, start=0):
    stream.set_epoch(epoch, start)
    return list(stream)


def test_one_epoch_is_every_example_once_in_length_grouped_batches(collate):
    stream = StreamingBatches(feature_stream(100), 100, 8, collate, ["input_ids", "attention_mask", "labels"],
                              seed=3)
    epoch = batches(stream)
    assert len(stream) == len(epoch) == 13  # ceil(100 / 8)
    assert sorted(labels_of(epoch)) == list(range(100))
    # Sorted by length inside a window: a batch pads to at most one length above its shortest.
    for batch in epoch:
        lengths = batch["attention_mask"].sum(dim=1)
        assert int(lengths.max() - lengths.min()) <= 1
    assert labels_of(batches(stream)) == labels_of(epoch)  # the same epoch again: the same batches
    assert labels_of(batches(stream, epoch=1)) != labels_of(epoch)  # the next epoch: reshuffled
    assert labels_of(batches(stream, start=5)) == labels_of(epoch[5:])  # resuming mid-epoch


def test_processes_share_the_stream_and_yield_equal_batch_counts(collate):
    columns = ["input_ids", "attention_mask", "labels"]
    ranks = [StreamingBatches(feature_stream(21), 21, 4, collate, columns, seed=1, num_replicas=2, rank=rank)
             for rank in (0, 1)]
    epochs = [batches(stream) for stream in ranks]
    assert [len(epoch) for epoch in epochs] == [3, 3]  # ceil(21 / (4 x 2))
    first, second = (labels_of(epoch) for epoch in epochs)
    # Rank 0 keeps examples 0, 2, ... (11 of them), rank 1 the other 10: 3 batches each, and
    # every example is seen by exactly one rank.
    assert set(first).isdisjoint(second) and set(first) | set(second) == set(range(21))


def test_a_stream_shorter_than_its_declared_size_repeats_batches(collate, caplog):
    stream = StreamingBatches(feature_stream(10), 40, 4, collate, ["input_ids", "attention_mask", "labels"])
    epoch = batches(stream)
    assert len(epoch) == 10  # ceil(40 / 4), of which 3 hold the stream and 7 repeat them
    assert set(labels_of(epoch)) == set(range(10))
    assert "the stream gave 3 batches where its size (40 examples) promised 10" in caplog.text


def test_a_stream_longer_than_its_declared_size_says_so_once(collate, caplog):
    stream = StreamingBatches(feature_stream(40), 12, 4, collate, ["input_ids", "attention_mask", "labels"],
                              task="big")
    first, second = batches(stream), batches(stream, epoch=1)
    assert len(first) == len(second) == 3  # the size decides the epoch: ceil(12 / 4)
    assert len(set(labels_of(first))) == 12  # 12 of the 40 examples
    message = ("task big: its training file holds more examples than its size (12) declares; each epoch "
               "trains on 3 batches of the shuffled stream and never reaches the rest of the file")
    assert caplog.text.count(message) == 1
    caplog.clear()
    exact = StreamingBatches(feature_stream(12), 12, 4, collate, ["input_ids", "attention_mask", "labels"])
    batches(exact)
    assert "holds more examples" not in caplog.text


def write_lines(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def stream_spec(tmp_path, count: int, **changes):
    train = write_lines(tmp_path / "train.jsonl",
                        [{"text": f"film {i}", "label": "pos" if i % 2 else "neg"}
                         for i in range(count)])
    validation = write_lines(tmp_path / "validation.jsonl", [{"text": "good film", "label": "pos"},
                                                             {"text": "bad film", "label": "neg"}])
    fields = dict(name="streamed", type="classification", format="json", streaming=True,
                  data_files={"train": str(train), "validation": str(validation)})
    return TaskSpec(**{**fields, **changes})


def test_a_streamed_task_is_counted_labelled_and_mixed_with_in_memory_tasks(tmp_path, tiny_tokenizer):
    streamed = stream_spec(tmp_path, 50)
    tasks = prepare_task_data([streamed], tiny_tokenizer, max_length=32, cache_dir=str(tmp_path / "cache"))
    data = tasks["streamed"]
    assert data.train_size == 50 and data.labels == ["neg", "pos"]  # counted, labels read from the stream
    assert len(data.splits["validation"]) == 2
    loader = MultiTaskLoader(tasks, tiny_tokenizer, batch_size=8, seed=0)
    assert loader.sizes == {"streamed": 7}
    drawn = [next(iter_) for iter_ in [iter(loader)] for _ in range(14)]  # two epochs
    labels = [int(label) for _, batch in drawn for label in batch["labels"]]
    assert len(labels) == 100 and sorted(labels) == [0] * 50 + [1] * 50
    assert loader.epochs == {"streamed": 1}


def test_a_declared_size_skips_the_count_and_entries_are_checked(tmp_path, tiny_tokenizer):
    tasks = prepare_task_data([stream_spec(tmp_path, 50, size=48, labels=["neg", "pos"])], tiny_tokenizer,
                              max_length=32, cache_dir=str(tmp_path / "cache"))
    assert tasks["streamed"].train_size == 48
    with pytest.raises(TaskError, match="size must be a positive number of examples, got 0"):
        stream_spec(tmp_path, 5, size=0)
    with pytest.raises(TaskError, match="size is for streamed tasks; set streaming: true"):
        stream_spec(tmp_path, 5, streaming=False, size=5)
    with pytest.raises(TaskError, match="streaming reads local files"):
        TaskSpec(name="hub", type="classification", dataset="stanfordnlp/sst2", streaming=True)


BROKEN_JSON = '{"text": "good film", "label": "pos"}\n{"text": "bad film", "label": \n'


@pytest.mark.parametrize("fmt, body, message", [
    ("csv", "text,label\ngood film,pos\nbad, film,neg\n", "line 3: 3 fields where the header has 2"),
    ("json", BROKEN_JSON, "line 2: not valid JSON"),
])
def test_a_malformed_streamed_row_names_the_file_and_line(tmp_path, tiny_tokenizer, fmt, body, message):
    from mtl_nlp import DataError

    train = tmp_path / f"train.{fmt}"
    train.write_text(body)
    validation = tmp_path / f"validation.{fmt}"
    validation.write_text(body.split("\n", 1)[0] + "\n" + ("good film,pos\n" if fmt == "csv" else ""))
    spec = TaskSpec(name="streamed", type="classification", format=fmt, streaming=True,
                    data_files={"train": str(train), "validation": str(validation)})
    with pytest.raises(DataError, match=rf"task 'streamed': {train} {message}"):
        prepare_task_data([spec], tiny_tokenizer, max_length=32, cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("declared, reads", [
    ({}, 1),  # one pass counts the rows and collects the labels
    ({"labels": ["neg", "pos"]}, 1),  # one pass counts
    ({"size": 50}, 1),  # one pass collects the labels
    ({"size": 50, "labels": ["neg", "pos"]}, 0),  # nothing to learn before training
])
def test_a_streamed_file_is_read_once_before_training_at_most(tmp_path, tiny_tokenizer, monkeypatch,
                                                               declared, reads):
    from mtl_nlp.data import loading

    opened = []
    real_rows = loading._stream_rows

    def counted_rows(task, path, builder, options):
        opened.append(path)
        yield from real_rows(task, path, builder, options)

    monkeypatch.setattr(loading, "_stream_rows", counted_rows)
    tasks = prepare_task_data([stream_spec(tmp_path, 50, **declared)], tiny_tokenizer, max_length=32,
                              cache_dir=str(tmp_path / "cache"))
    full_passes = len(opened) - 1  # the column types come from reading the first row
    assert full_passes == reads
    assert tasks["streamed"].train_size == 50 and tasks["streamed"].labels == ["neg", "pos"]


def test_a_streamed_file_without_rows_is_a_clear_error(tmp_path, tiny_tokenizer):
    empty = stream_spec(tmp_path, 0)
    with pytest.raises(DataError, match=r"task 'streamed': .*train.jsonl is empty"):
        prepare_task_data([empty], tiny_tokenizer, max_length=32, cache_dir=str(tmp_path / "cache"))
    header_only, validation = tmp_path / "train.csv", tmp_path / "validation.csv"
    header_only.write_text("text,label\n")
    validation.write_text("text,label\ngood film,pos\n")
    spec = TaskSpec(name="streamed", type="classification", format="csv", streaming=True, size=10,
                    labels=["neg", "pos"],
                    data_files={"train": str(header_only), "validation": str(validation)})
    with pytest.raises(DataError, match="task 'streamed', split train: the streamed file has no examples"):
        prepare_task_data([spec], tiny_tokenizer, max_length=32, cache_dir=str(tmp_path / "cache"))
