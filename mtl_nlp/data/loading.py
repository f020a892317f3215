"""Load a task's raw splits (train/validation/test) from the Hub or from local files."""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict
from datasets.exceptions import DatasetGenerationError

from mtl_nlp.data.conll import ConllFormatError, read_conll
from mtl_nlp.errors import MtlNlpError
from mtl_nlp.registry import TaskSpec

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}
HELD_OUT_FRACTION = 0.05  # of train, used for validation when a task has no validation split
HELD_OUT_MAX = 1000
SMALL_VALIDATION = 50  # held-out sets smaller than this get a warning, not an INFO line
CONLL_READER_VERSION = 1  # bump when read_conll's output changes, to invalidate cached files


class DataError(MtlNlpError, ValueError):
    """Task data that is missing or malformed; the message names the task and the file."""


def load_task_splits(
    spec: TaskSpec, data_dir: str | None = None, cache_dir: str | None = None, seed: int = 42
) -> DatasetDict:
    """Return the task's raw splits named train, validation and (when it exists) test.

    A task without a validation split gets one held out from train (seeded), so that every task
    can be scored during training without touching its test split.
    """
    if data_dir is not None and spec.local_files is not None:
        splits = _load_files(spec, _resolve(spec.local_files, data_dir), spec.local_format, cache_dir)
    elif spec.data_files is not None:
        splits = _load_files(spec, _resolve(spec.data_files, data_dir), spec.format, cache_dir)
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
    builder, kwargs = {
        "csv": ("csv", {}),
        "tsv": ("csv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE}),
        "tsv_quoted": ("csv", {"delimiter": "\t", "quoting": csv.QUOTE_MINIMAL}),
        "json": ("json", {}),
    }[fmt]
    if builder == "csv":
        # Keep "NA"/"null" texts as text; only truly empty cells become missing values.
        kwargs.update(keep_default_na=False, na_values=[""])
    data_files = {split: str(path) for split, path in files.items()}
    try:
        loaded = datasets.load_dataset(builder, data_files=data_files, cache_dir=cache_dir, **kwargs)
    except Exception as exc:  # datasets wraps parser errors; surface the file and the cause
        if builder == "csv":
            for path in files.values():
                bad = _first_ragged_row(path, kwargs)
                if bad is not None:
                    line, found, expected = bad
                    raise DataError(
                        f"task {spec.name!r}: {path} line {line}: {found} fields where the header has "
                        f"{expected}; quote a cell that holds the delimiter"
                    ) from exc
        cause = exc.__cause__ or exc
        raise DataError(
            f"task {spec.name!r}: cannot read {fmt} files {data_files}: {cause}"
        ) from exc
    if builder != "csv":
        return loaded
    return DatasetDict({split: _with_file_lines(data, files[split], kwargs)
                        for split, data in loaded.items()})


def _records(path: Path, dialect: dict) -> Iterator[tuple[int, list[str]]]:
    """(first file line, cells) of each non-blank record of a table file, header included."""
    previous = 0
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=dialect.get("delimiter", ","),
                            quoting=dialect.get("quoting", csv.QUOTE_MINIMAL))
        for row in reader:
            start, previous = previous + 1, reader.line_num
            if row:
                yield start, row


def _first_ragged_row(path: Path, dialect: dict) -> tuple[int, int, int] | None:
    """(line, fields, header fields) of the first row whose field count differs from the header's."""
    try:
        records = _records(path, dialect)
        _, header = next(records)
        for line, row in records:
            if len(row) != len(header):
                return line, len(row), len(header)
    except (csv.Error, StopIteration):
        return None
    return None


def _with_file_lines(dataset: Dataset, path: Path, dialect: dict) -> Dataset:
    """Add a `line` column: the file line each row starts on, so that a data error names the
    line a user opens the file at (quoted cells may span lines; blank lines are skipped, as the
    table reader does). Left out when the two readers disagree on the row count."""
    try:
        starts = [line for line, _ in _records(path, dialect)]
    except csv.Error:
        return dataset
    rows = starts[1:]  # the first record is the header
    if len(rows) != len(dataset) or "line" in dataset.column_names:
        return dataset
    return dataset.add_column("line", rows)


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
    loaded = datasets.load_dataset(spec.dataset, spec.dataset_config, cache_dir=cache_dir)
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
