"""Load a task's raw splits (train/validation/test) from the Hub or from local files."""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict, IterableDataset
from datasets.exceptions import DatasetGenerationError

from mtl_nlp.common.errors import DataError, MtlNlpError
from mtl_nlp.data.conll import ConllFormatError, read_conll
from mtl_nlp.data.file_problems import (
    file_problem,
    first_bad_byte,
    is_utf8,
    json_lines,
    json_problem,
    ragged_problem,
    streamed_file_problem,
    table_records,
)
from mtl_nlp.registry import TaskSpec

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}
HELD_OUT_FRACTION = 0.05  # of train, used for validation when a task has no validation split
HELD_OUT_MAX = 1000
SMALL_VALIDATION = 50  # held-out sets smaller than this get a warning, not an INFO line
CONLL_READER_VERSION = 2  # bump when read_conll's output changes, to invalidate cached files


def load_task_splits(
    spec: TaskSpec, data_dir: str | None = None, cache_dir: str | None = None, seed: int = 42
) -> DatasetDict:
    """Return the task's raw splits named train, validation and (when it exists) test.

    A task without a validation split gets one held out from train (seeded), so that every task
    can be scored during training without touching its test split.
    """
    load = _load_streamed if spec.streaming else _load_files
    if data_dir is not None and spec.local_files is not None:
        splits = load(spec, _resolve(spec.local_files, data_dir), spec.local_format, cache_dir)
    elif spec.data_files is not None:
        splits = load(spec, _resolve(spec.data_files, data_dir), spec.format, cache_dir)
    elif spec.dataset is not None:
        splits = _load_hub(spec, cache_dir)
    else:
        raise DataError(
            f"task {spec.name!r} has only local_files; set data_dir=PATH to the folder holding them"
        )
    if "train" not in splits:
        raise DataError(f"task {spec.name!r} has no train split (splits: {', '.join(splits)})")
    if "validation" not in splits:
        splits = _hold_out_validation(spec, splits, seed)
    return splits


def _resolve(files: Mapping[str, str], data_dir: str | None) -> dict[str, Path]:
    """Map split aliases to canonical names and make relative paths relative to data_dir."""
    resolved = {}
    for split, path in files.items():
        path = Path(path).expanduser()
        if not path.is_absolute() and data_dir is not None:
            path = Path(data_dir) / path
        resolved[SPLIT_ALIASES.get(split, split)] = path
    return resolved


def _load_files(
    spec: TaskSpec, files: dict[str, Path], fmt: str | None, cache_dir: str | None
) -> DatasetDict:
    for split, path in files.items():
        if split not in SPLITS:
            raise DataError(
                f"task {spec.name!r}: unknown split {split!r} in data files; use {', '.join(SPLITS)}"
            )
        if not path.is_file():
            raise DataError(f"task {spec.name!r}: {split} data file not found: {path}")
    if fmt == "conll":
        return DatasetDict({split: _load_conll(spec, path, cache_dir) for split, path in files.items()})
    builder, kwargs = _builder(spec, fmt)
    data_files = {split: str(path) for split, path in files.items()}
    try:
        loaded = datasets.load_dataset(builder, data_files=data_files, cache_dir=cache_dir, **kwargs)
    except Exception as exc:  # datasets wraps parser errors; surface the file, the line and the cause
        for path in files.values():
            problem = file_problem(path, builder, kwargs)
            if problem is not None:
                raise DataError(f"task {spec.name!r}: {path} {problem}") from exc
        cause = exc.__cause__ or exc
        raise DataError(
            f"task {spec.name!r}: cannot read {fmt} files {data_files}: {cause}"
        ) from exc
    if builder != "csv":
        for path in files.values():  # the JSON reader keeps bytes that are not UTF-8 as they are
            if not is_utf8(path):
                raise DataError(f"task {spec.name!r}: {path} {first_bad_byte(path)[1]}")
        _check_json_texts(spec, loaded, files)
        return loaded
    return DatasetDict({split: _with_file_lines(spec, data, files[split], kwargs)
                        for split, data in loaded.items()})


def _builder(spec: TaskSpec, fmt: str) -> tuple[str, dict]:
    """The `datasets` builder reading a table or JSON-lines format, and its reader options."""
    builder, kwargs = {
        "csv": ("csv", {}),
        "tsv": ("csv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE}),
        "tsv_quoted": ("csv", {"delimiter": "\t", "quoting": csv.QUOTE_MINIMAL}),
        "json": ("json", {}),
    }[fmt]
    if builder == "csv":
        # Keep "NA"/"null" texts as text; only truly empty cells become missing values. Text
        # columns stay text: a column of "1", "007" or "True" is not read as numbers.
        kwargs.update(keep_default_na=False, na_values=[""],
                      converters={column: str for column in _text_columns(spec)})
    return builder, kwargs


def _load_streamed(
    spec: TaskSpec, files: dict[str, Path], fmt: str | None, cache_dir: str | None
) -> DatasetDict:
    """Validation and test in memory; train as an IterableDataset, read lazily from its file."""
    if "validation" not in files:
        raise DataError(
            f"task {spec.name!r} streams its training file: give a validation file too "
            "(data_files: {validation: ...}); examples cannot be held out of a stream"
        )
    train = files.get("train")
    if train is None or not train.is_file():
        raise DataError(f"task {spec.name!r}: train data file not found: {train}")
    splits = _load_files(spec, {split: path for split, path in files.items() if split != "train"},
                         fmt, cache_dir)
    if fmt == "conll":
        columns = {"tokens_column": spec.tokens_column, "tags_column": spec.tags_column}
        arguments = {"path": str(train), **columns}
        splits["train"] = IterableDataset.from_generator(read_conll, gen_kwargs=arguments)
    else:
        builder, kwargs = _builder(spec, fmt)
        arguments = {"task": spec.name, "path": str(train), "builder": builder, "options": kwargs}
        splits["train"] = IterableDataset.from_generator(_stream_rows, gen_kwargs=arguments)
    return splits


# How much of a streamed file the reader parses at once: this, not the file's size, bounds its
# memory (`datasets` reads JSON lines 10 MB at a time and tables 10,000 rows at a time).
STREAM_CHUNKS = {"json": {"chunksize": 1 << 20}, "csv": {"chunksize": 1_000}}


def _stream_rows(task: str, path: str, builder: str, options: dict) -> Iterator[dict]:
    """The rows of a table or JSON-lines file, read lazily by `datasets` in small chunks; a row
    the reader cannot parse ends in a DataError naming the file and its first faulty line, found
    by a second streaming pass over the file (memory stays flat)."""
    try:
        streamed = datasets.load_dataset(builder, data_files={"train": path}, streaming=True,
                                         **options, **STREAM_CHUNKS[builder])
        yield from streamed["train"]
    except MtlNlpError:
        raise
    except Exception as exc:
        problem = streamed_file_problem(Path(path), builder, options)
        raise DataError(f"task {task!r}: {path} {problem or f'cannot be read: {exc}'}") from exc


def _text_columns(spec: TaskSpec) -> list[str]:
    """The columns holding the task's input texts (none for tagging tasks, which read words)."""
    if spec.type == "token_classification":
        return []
    return [spec.text_column] + ([spec.text_pair_column] if spec.text_pair_column else [])


def _check_json_texts(spec: TaskSpec, loaded: DatasetDict, files: dict[str, Path]) -> None:
    """A DataError naming the line of the first text that is not a string (a number, a list, NaN),
    which would otherwise be dropped as a missing text."""
    for split, dataset in loaded.items():
        for column in _text_columns(spec):
            feature = dataset.features.get(column)
            if feature is None:
                continue
            if None in dataset[column]:
                # the JSON reader takes NaN and Infinity (not JSON) for a missing text: name the line
                problem = json_problem(files[split].read_text(encoding="utf-8-sig"))
                if problem is not None:
                    raise DataError(f"task {spec.name!r}: {files[split]} {problem[1]}")
            if getattr(feature, "dtype", None) in ("string", "large_string"):
                continue
            for row, value in enumerate(dataset[column]):  # decoded (a mixed column is stored as JSON)
                if value is not None and not isinstance(value, str):
                    text = files[split].read_text(encoding="utf-8-sig")
                    lines = [number for number, _ in json_lines(text)]
                    where = f"line {lines[row]}" if len(lines) == len(dataset) else f"row {row}"
                    raise DataError(
                        f"task {spec.name!r}: {files[split]} {where}: {column!r} is "
                        f"{type(value).__name__} {value!r}, expected a string"
                    )


def _with_file_lines(spec: TaskSpec, dataset: Dataset, path: Path, dialect: dict) -> Dataset:
    """Add a `line` column: the file line each row starts on, so that a data error names the
    line a user opens the file at (quoted cells may span lines; blank lines are skipped, as the
    table reader does). Left out when the two readers disagree on the row count.

    Reading the file line by line (Python's csv module) also checks what the table reader
    (pandas) does not: a row with more fields than the header (pandas would take its first field
    for an index and shift the others), and texts the two read differently (a carriage return
    alone at the start of a line)."""
    try:
        records = list(table_records(path, dialect))
    except csv.Error:
        return dataset
    if not records:
        return dataset
    header, rows = records[0][1], records[1:]
    for line, row in rows:
        if len(row) > len(header):
            raise DataError(f"task {spec.name!r}: {path} {ragged_problem(line, len(row), len(header))}")
    header = [header[0].removeprefix("\ufeff"), *header[1:]]
    for column in _text_columns(spec):
        if column not in header or column not in dataset.column_names:
            continue
        position = header.index(column)
        for (line, row), value in zip(rows, dataset.data.column(column).to_pylist()):
            cell = row[position] if position < len(row) else ""
            if (cell or None) != value:
                raise DataError(
                    f"task {spec.name!r}: {path} line {line}: the {column} cell reads as {value!r} "
                    f"instead of {cell!r}; a carriage return (\\r) alone starts a new line: remove it, "
                    "or quote the cell"
                )
    if len(rows) != len(dataset) or "line" in dataset.column_names:
        return dataset
    return dataset.add_column("line", [line for line, _ in rows])


def _load_conll(spec: TaskSpec, path: Path, cache_dir: str | None) -> Dataset:
    path, stat = path.resolve(), path.stat()
    # The file's size and mtime enter the cache key, so an edited file is re-read; the columns
    # enter it because two tasks may read the same file under different column names.
    columns = {"tokens_column": spec.tokens_column, "tags_column": spec.tags_column}
    key = f"{CONLL_READER_VERSION}|{path}|{stat.st_size}|{stat.st_mtime_ns}|{sorted(columns.items())}"
    try:
        return Dataset.from_generator(
            read_conll,
            gen_kwargs={"path": str(path), **columns},
            cache_dir=cache_dir,
            fingerprint="conll-" + hashlib.sha256(key.encode()).hexdigest()[:32],
        )
    except DatasetGenerationError as exc:
        # datasets hides the reader's error behind a generic one; surface the file and line.
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, ConllFormatError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise DataError(f"task {spec.name!r}: {cause}") from cause


def _load_hub(spec: TaskSpec, cache_dir: str | None) -> DatasetDict:
    try:
        loaded = datasets.load_dataset(spec.dataset, spec.dataset_config, cache_dir=cache_dir)
    except ConnectionError as error:  # no network, or offline mode with nothing cached
        raise DataError(_unreachable_message(spec, error)) from None
    if spec.splits is not None:
        missing = sorted(set(spec.splits.values()) - set(loaded))
        if missing:
            raise DataError(
                f"task {spec.name!r}: dataset {spec.dataset!r} has no split {missing[0]!r} "
                f"(splits: {', '.join(loaded)})"
            )
        return DatasetDict({ours: loaded[theirs] for ours, theirs in spec.splits.items()})
    renamed = {SPLIT_ALIASES.get(name, name): data for name, data in loaded.items()}
    return DatasetDict({name: data for name, data in renamed.items() if name in SPLITS})


def _unreachable_message(spec: TaskSpec, error: Exception) -> str:
    """Why a Hub dataset could not be had, and the two ways to run without the Hub."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    local = ""
    if spec.local_files:
        local = f" (this task reads {', '.join(sorted(spec.local_files.values()))} there)"
    return (f"task {spec.name!r}: cannot load dataset {spec.dataset!r} from the Hugging Face Hub: {reason}; "
            f"without a network, set data_dir= to a folder of local copies{local}, or, when the dataset is "
            "in the datasets cache already, set HF_DATASETS_OFFLINE=1 and HF_HUB_OFFLINE=1")


def _hold_out_validation(spec: TaskSpec, splits: DatasetDict, seed: int) -> DatasetDict:
    train = splits["train"]
    if len(train) < 2:
        raise DataError(
            f"task {spec.name!r} has no validation split and {len(train)} training example(s) to "
            "hold one out from; add a validation file"
        )
    size = min(HELD_OUT_MAX, max(1, int(len(train) * HELD_OUT_FRACTION)))
    parts = train.train_test_split(test_size=size, seed=seed, shuffle=True)
    if size < SMALL_VALIDATION:
        logger.warning(
            "task %s has no validation split: only %d of its %d training examples are held out for "
            "validation, so choosing the best checkpoint on them is mostly chance; add a validation "
            "split (data_files: {validation: ...}) for a trustworthy model selection",
            spec.name, size, len(train),
        )
    else:
        logger.info(
            "task %s has no validation split: holding out %d of %d training examples for validation",
            spec.name, size, len(train),
        )
    result = DatasetDict(splits)
    result["train"], result["validation"] = parts["train"], parts["test"]
    return result
