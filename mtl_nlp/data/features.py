"""Tokenization and label alignment, run once per split with `datasets.map` (and cached)."""

from __future__ import annotations

import functools
import logging
from collections import Counter
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset
from transformers import PreTrainedTokenizerBase

from mtl_nlp.common.errors import DataError
from mtl_nlp.common.long_texts import default_stride, plan_word_windows
from mtl_nlp.common.tokenizing import IGNORE_INDEX, encode_texts
from mtl_nlp.data.answers import ROW_COLUMN, encode_questions
from mtl_nlp.data.choices import encode_choices
from mtl_nlp.data.code_version import Versioned
from mtl_nlp.data.labels import LabelMapper, LabelTargets, label_column
from mtl_nlp.data.word_pieces import align_piece_labels, continuation_ids, piece_starts
from mtl_nlp.registry import TaskSpec

logger = logging.getLogger(__name__)

FEATURE_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels")
# Evaluation rows of tagging tasks are windows: which example, and which of its words, each holds.
WINDOW_COLUMNS = ("example_index", "word_start")


def align_word_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Give each word's label to its first subword and IGNORE_INDEX to every other position."""
    aligned = []
    previous = None
    for word_id in word_ids:
        if word_id is None or word_id == previous:
            aligned.append(IGNORE_INDEX)
        else:
            aligned.append(word_labels[word_id])
        previous = word_id
    return aligned


def _where(split: str, index: int, example_line: Any, what: str = "sentence at line") -> str:
    """Where an example sits: its file line when the loader recorded one, else its row."""
    if example_line is not None:
        return f"split {split}, {what} {example_line}"
    return f"split {split}, row {index}"


def _encode_sentences(
    batch: dict[str, list], indices: list[int], *, tokenizer: PreTrainedTokenizerBase,
    spec: TaskSpec, mapper: LabelTargets, max_length: int, split: str,
) -> dict[str, list]:
    pairs = batch[spec.text_pair_column] if spec.text_pair_column else None
    encoded = encode_texts(tokenizer, batch[spec.text_column], pairs, max_length)
    lines = batch.get("line") or [None] * len(indices)
    encoded["labels"] = [
        mapper(value, _where(split, index, line, "line"))
        for value, index, line in zip(batch[spec.label_column], indices, lines)
    ]
    return encoded


def _encode_tagging(
    batch: dict[str, list], indices: list[int], *, tokenizer: PreTrainedTokenizerBase,
    spec: TaskSpec, mapper: LabelMapper, max_length: int, split: str, stride: int | None,
) -> dict[str, list]:
    """Tokenize words and align their tags. With a `stride` (evaluation splits), an example
    longer than max_length becomes overlapping windows of whole words, so every word is scored
    once, on its first token; without one (training), it is truncated and the pieces raw text
    splits a word into are labelled too (see word_pieces)."""
    lines = batch.get("line") or [None] * len(indices)
    words, word_labels = batch[spec.tokens_column], []
    for row, (tags, index, line) in enumerate(zip(batch[spec.tags_column], indices, lines)):
        where = _where(split, index, line)
        if len(tags) != len(words[row]):
            raise DataError(f"task {spec.name!r}, {where}: {len(tags)} tags for "
                            f"{len(words[row])} words")
        word_labels.append([mapper(tag, where) for tag in tags])
    if stride is None:
        return _encode_training_words(tokenizer, words, word_labels, mapper.labels, max_length)
    return _encode_word_windows(tokenizer, words, word_labels, indices, max_length, stride)


def _encode_training_words(
    tokenizer: PreTrainedTokenizerBase, words: list[list[str]], word_labels: list[list[int]],
    labels: list[str], max_length: int,
) -> dict[str, list]:
    """Truncated rows whose labels also cover the pieces raw-text reading splits words into."""
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length,
                        return_offsets_mapping=True)
    offsets = encoded.pop("offset_mapping")
    starts = piece_starts(tokenizer, [word for row in words for word in row])
    continued = continuation_ids(labels)
    encoded["labels"] = [
        align_piece_labels(encoded.word_ids(row), offsets[row], words[row], row_labels, starts, continued)
        for row, row_labels in enumerate(word_labels)
    ]
    return encoded


def _encode_word_windows(
    tokenizer: PreTrainedTokenizerBase, words: list[list[str]], word_labels: list[list[int]],
    indices: list[int], max_length: int, stride: int,
) -> dict[str, list]:
    """One row per window: its tokens, aligned labels, `example_index` (the example's row) and
    `word_start` (how many of the example's scored words, those with at least one token, come
    before the window: its labelled positions are the next words in order)."""
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    unspecial = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    window_words, window_labels, example_index, word_start = [], [], [], []
    for row, index in enumerate(indices):
        counts = [0] * len(words[row])
        for word in unspecial.word_ids(row):
            counts[word] += 1
        scored_before = [0]
        for count in counts:
            scored_before.append(scored_before[-1] + (count > 0))
        for start, end in plan_word_windows(counts, budget, stride):
            window_words.append(words[row][start:end])
            window_labels.append(word_labels[row][start:end])
            example_index.append(index)
            word_start.append(scored_before[start])
    encoded = tokenizer(window_words, is_split_into_words=True, truncation=True, max_length=max_length)
    encoded["labels"] = [
        align_word_labels(encoded.word_ids(row), labels) for row, labels in enumerate(window_labels)
    ]
    encoded["example_index"] = example_index
    encoded["word_start"] = word_start
    return encoded


def _encode_entry(
    batch: dict[str, list], indices: list[int], *, tokenizer: PreTrainedTokenizerBase,
    spec: TaskSpec, mappers: dict[str, LabelTargets], max_length: int, split: str, stride: int | None,
) -> dict[str, list]:
    """An entry of several heads: its input encoded once (its tagging heads' words, else its
    texts) and a `labels` struct column, {head: that head's labels} per row. A row that is one
    window of a long example carries the example's sentence labels."""
    tagging = [head for head in spec.heads if head.type == "token_classification"]
    labels: dict[str, list] = {}
    encoded = None
    for head in tagging:  # every tagging head reads the same words, so the rows are the same
        head_encoded = _encode_tagging(batch, indices, tokenizer=tokenizer, spec=head,
                                       mapper=mappers[head.name], max_length=max_length, split=split,
                                       stride=stride)
        labels[head.name] = head_encoded.pop("labels")
        encoded = head_encoded if encoded is None else encoded
    if encoded is None:
        reader = spec.heads[0]
        pairs = batch[reader.text_pair_column] if reader.text_pair_column else None
        encoded = encode_texts(tokenizer, batch[reader.text_column], pairs, max_length)
    position = {index: row for row, index in enumerate(indices)}
    examples = encoded["example_index"] if "example_index" in encoded else indices
    lines = batch.get("line") or [None] * len(indices)
    for head in spec.heads:
        if head.type != "token_classification":
            values, mapper = batch[head.label_column], mappers[head.name]
            labels[head.name] = [
                mapper(values[position[index]], _where(split, index, lines[position[index]], "line"))
                for index in examples
            ]
    encoded["labels"] = [{head.name: labels[head.name][row] for head in spec.heads}
                         for row in range(len(examples))]
    return encoded


def reading_spec(spec: TaskSpec) -> TaskSpec:
    """The spec whose input a task reads: an entry's first tagging head (its words), else its first
    head (its texts); a task of one head reads its own."""
    if spec.heads is None:
        return spec
    tagging = [head for head in spec.heads if head.type == "token_classification"]
    return (tagging or list(spec.heads))[0]


def input_columns(spec: TaskSpec) -> list[str]:
    """The columns a task reads its inputs from (words, one or two texts, or a question and its
    options)."""
    if spec.type == "token_classification":
        return [spec.tokens_column]
    if spec.type == "multiple_choice":
        context = [spec.context_column] if spec.context_column else []
        return [spec.question_column, spec.choices_column, *context]
    if spec.type == "extractive_qa":
        return [spec.question_column, spec.context_column]
    return [spec.text_column] + ([spec.text_pair_column] if spec.text_pair_column else [])


def _is_present(spec: TaskSpec, example: dict[str, Any]) -> bool:
    if spec.type == "token_classification":
        tokens = example[spec.tokens_column]
        return bool(tokens) and all(isinstance(t, str) and t.strip() for t in tokens)
    if spec.type == "multiple_choice":  # its options are checked as it is encoded (an error, not a drop)
        question = example[spec.question_column]
        return isinstance(question, str) and bool(question.strip())
    if spec.type == "extractive_qa":  # its answers are checked as it is encoded
        texts = (example[spec.question_column], example[spec.context_column])
        return all(isinstance(text, str) and bool(text.strip()) for text in texts)
    # A pair task needs both texts: a pair with one side missing is not an example.
    return all(isinstance(example[c], str) and bool(example[c].strip()) for c in input_columns(spec))


def check_columns(spec: TaskSpec, split: str, columns: list[str]) -> None:
    """Raise a DataError naming any column the task needs that is not among `columns`."""
    wanted = [*input_columns(reading_spec(spec)), *(label_column(head) for head in spec.head_specs)]
    for column in wanted:
        if column not in columns:
            raise DataError(
                f"task {spec.name!r}, split {split}: column {column!r} not found; "
                f"columns: {', '.join(columns)}"
            )


def present_examples(spec: TaskSpec, split: str, dataset: Dataset) -> Dataset:
    """The examples of a split with text to read (those with empty or missing text are dropped):
    the rows its features are encoded from, in order, one feature row each in training."""
    return dataset.filter(Versioned(_is_present, reading_spec(spec)), desc=f"{spec.name}/{split}")


def stream_columns(dataset: IterableDataset) -> list[str]:
    """The columns of a stream: its declared ones, else those of its first row (read to learn
    them, as a file read lazily has no schema before it is read)."""
    if dataset.column_names is not None:
        return list(dataset.column_names)
    first = next(iter(dataset.take(1)), None)
    return list(first) if first is not None else []


def encode_splits(
    spec: TaskSpec, splits: DatasetDict, tokenizer: PreTrainedTokenizerBase,
    mapper: LabelTargets, max_length: int, stride: int | None = None,
    eval_mapper: LabelTargets | None = None,
) -> DatasetDict:
    """Tokenize every split, align labels, drop empty examples (logged) and add a `length` column.

    Tagging examples longer than max_length are truncated in train and become overlapping windows
    sharing about `stride` tokens (default: max_length // 4) in the other splits, which are scored.
    `eval_mapper` maps the labels of the scored splits (by default `mapper`): it also knows the
    labels that occur only there (see pipeline.unseen_labels), which count as errors. For an entry
    of several heads both are {head: its mapper}, and `labels` holds {head: labels} per row.
    """
    reader = reading_spec(spec)
    tagging = reader.type == "token_classification"
    encoded = {}
    for split, dataset in splits.items():
        if isinstance(dataset, IterableDataset):
            encoded[split] = _encode_stream(spec, split, dataset, tokenizer, mapper, max_length)
            continue
        check_columns(spec, split, dataset.column_names)
        present = present_examples(spec, split, dataset)
        if len(present) == 0:
            raise DataError(f"task {spec.name!r}, split {split}: all {len(dataset)} examples have empty "
                            f"or missing text in {', '.join(input_columns(reader))}")
        if len(present) < len(dataset):
            logger.warning(
                "task %s, split %s: dropped %d of %d examples with empty or missing text",
                spec.name, split, len(dataset) - len(present), len(dataset),
            )
        windows = None
        if tagging and split != "train":
            windows = default_stride(max_length) if stride is None else stride
        split_mapper = mapper if split == "train" or eval_mapper is None else eval_mapper
        if spec.heads is not None:  # split_mapper: {head: its mapper}
            function = Versioned(_encode_entry, tokenizer=tokenizer, spec=spec, mappers=split_mapper,
                                 max_length=max_length, split=split, stride=windows)
        elif reader.type == "multiple_choice":
            function = Versioned(encode_choices, tokenizer=tokenizer, spec=spec, max_length=max_length,
                                 split=split)
        elif reader.type == "extractive_qa":  # windows of the context in every split
            function = Versioned(encode_questions, tokenizer=tokenizer, spec=spec, max_length=max_length,
                                 split=split, stride=default_stride(max_length) if stride is None else stride)
        else:
            function = functools.partial(_encode_tagging, stride=windows) if tagging else _encode_sentences
            function = Versioned(
                function, tokenizer=tokenizer, spec=spec, mapper=split_mapper, max_length=max_length,
                split=split,
            )
        features = present.map(
            function, batched=True, with_indices=True, remove_columns=present.column_names,
            desc=f"tokenize {spec.name}/{split}",
        )
        features = features.map(Versioned(_add_length), batched=True, desc=f"lengths {spec.name}/{split}")
        if reader.type == "extractive_qa":
            features = features.map(Versioned(_add_row), batched=True, with_indices=True,
                                    desc=f"rows {spec.name}/{split}")
        if "example_index" in features.column_names:
            _log_windows(spec, split, features, max_length)
        else:
            _log_truncation(reader, split, features, max_length)
        encoded[split] = features
    return DatasetDict(encoded)


def _encode_stream(
    spec: TaskSpec, split: str, dataset: IterableDataset, tokenizer: PreTrainedTokenizerBase,
    mapper: LabelTargets, max_length: int,
) -> IterableDataset:
    """A streamed training split, tokenized lazily as it is read (examples with empty text are
    skipped, long ones truncated, as in memory)."""
    columns = stream_columns(dataset)
    if not columns:
        raise DataError(f"task {spec.name!r}, split {split}: the streamed file has no examples")
    check_columns(spec, split, columns)
    encode = _encode_sentences if spec.type != "token_classification" else functools.partial(
        _encode_tagging, stride=None)
    function = functools.partial(
        encode, tokenizer=tokenizer, spec=spec, mapper=mapper, max_length=max_length, split=split,
    )
    present = dataset.filter(functools.partial(_is_present, spec))
    features = present.map(function, batched=True, with_indices=True, remove_columns=columns)
    return features.map(_add_length, batched=True)


def windowed_examples(features: Dataset) -> int:
    """How many examples of a tagging split needed more than one window (0 for other splits)."""
    if "example_index" not in features.column_names:
        return 0
    windows_per_example = Counter(features["example_index"])
    return sum(count > 1 for count in windows_per_example.values())


def _add_length(batch: dict[str, list]) -> dict[str, list]:
    """Each example's tokens: its row's, or (multiple choice) options x its longest option's."""
    return {"length": [len(ids) * max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)
                       for ids in batch["input_ids"]]}


def _add_row(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
    return {ROW_COLUMN: list(indices)}


def _log_windows(spec: TaskSpec, split: str, features: Dataset, max_length: int) -> None:
    windowed = windowed_examples(features)
    if windowed:
        logger.info(
            "task %s, split %s: %d examples are longer than max_length=%d and are scored as "
            "overlapping windows (%d windows for %d examples)", spec.name, split, windowed,
            max_length, len(features), len(set(features["example_index"])),
        )


def _log_truncation(spec: TaskSpec, split: str, features: Dataset, max_length: int) -> None:
    if spec.type == "multiple_choice":  # an example is truncated when one of its options is
        truncated = sum(any(len(row) >= max_length for row in rows) for rows in features["input_ids"])
    else:
        truncated = sum(length >= max_length for length in features["length"])
    if truncated:
        if spec.type == "token_classification":
            consequence = "words past the limit are not trained on; evaluation scores every word"
        elif spec.text_pair_column or spec.type == "multiple_choice":
            consequence = "the longer text of each pair loses its last tokens first"
        else:
            consequence = "the model sees only their first tokens"
        logger.warning(
            "task %s, split %s: %d examples reach max_length=%d and are truncated (%s)",
            spec.name, split, truncated, max_length, consequence,
        )
