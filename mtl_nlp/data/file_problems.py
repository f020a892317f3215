"""What is wrong with a local data file that a reader failed on, as `line N: ...`: bytes that
are not UTF-8, an empty file or a header without rows, a row with more fields than the header,
a line that is not a JSON object. Read line by line, so that a file too large for memory is
checked too."""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from pathlib import Path


def streamed_file_problem(path: Path, builder: str, dialect: dict) -> str | None:
    """file_problem for a file too large to hold: the first line at fault, reading line by line."""
    bad_byte = first_bad_byte(path)
    if bad_byte is not None:
        return bad_byte[1]
    with path.open(encoding="utf-8-sig") as handle:
        if not any(line.strip() for line in handle):
            return "is empty"
    if builder == "json":
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                problem = _json_line_problem(number, line) if line.strip() else None
                if problem is not None:
                    return problem[1]
        return None
    bad = _first_ragged_row(path, dialect)
    return None if bad is None else ragged_problem(*bad)


def file_problem(path: Path, builder: str, dialect: dict) -> str | None:
    """Why a table or JSON file cannot be read, starting with the first line at fault (`line N:
    ...`), or None when no cause is found here. Only called once the reader has failed."""
    problems = [first_bad_byte(path)]
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if not text.strip():
        return "is empty"
    if builder == "json":
        problems.append(json_problem(text))
    else:
        try:
            records = list(table_records(path, dialect))
        except csv.Error as exc:
            return f"cannot be read as a table: {exc}"
        if len(records) == 1 and problems[0] is None:
            return f"has only a header (line {records[0][0]}) and no rows"
        bad = _first_ragged_row(path, dialect)
        problems.append(None if bad is None else (bad[0], ragged_problem(*bad)))
    found = [problem for problem in problems if problem is not None]
    return min(found)[1] if found else None


def is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def first_bad_byte(path: Path) -> tuple[int, str] | None:
    """(line, message) of the first byte that is not UTF-8. Lines end at \\n, \\r\\n or \\r, as
    for the table reader; such bytes are read as lone surrogates by `surrogateescape`."""
    with path.open(encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            for column, char in enumerate(line, start=1):
                if "\udc80" <= char <= "\udcff":
                    return number, (f"line {number}: byte 0x{ord(char) - 0xDC00:02x} at column {column} is "
                                     "not UTF-8; save the file as UTF-8")
    return None


def ragged_problem(line: int, found: int, expected: int) -> str:
    return (f"line {line}: {found} fields where the header has {expected}; quote a cell that holds "
            "the delimiter")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def json_lines(text: str) -> Iterator[tuple[int, str]]:
    """(file line, text) of the non-blank lines of a JSON-lines file."""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, line


def json_problem(text: str) -> tuple[int, str] | None:
    """(line, message) of the first line of a JSON-lines file that is not a JSON object (or where
    a JSON document is broken); None when every line is a JSON object."""
    first = next(json_lines(text))[1]
    try:
        json.loads(first, parse_constant=_reject_constant)
    except ValueError:
        if not first.strip().startswith("[") and first.strip() != "{":
            return _json_line_problem(1, first)  # a broken first record of JSON lines
        # a JSON document (a list of records, or a mapping) spanning lines
        try:
            json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            return exc.lineno, f"line {exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})"
        except ValueError as exc:
            return 1, f"line 1: not valid JSON: {exc}"
        return None
    for number, line in json_lines(text):
        problem = _json_line_problem(number, line)
        if problem is not None:
            return problem
    return None


def _json_line_problem(number: int, line: str) -> tuple[int, str] | None:
    try:
        value = json.loads(line, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return number, f"line {number}: not valid JSON: {exc.msg} (column {exc.colno})"
    except ValueError as exc:
        return number, f"line {number}: not valid JSON: {exc}"
    if not isinstance(value, dict):
        return number, f"line {number}: expected a JSON object of columns, got {type(value).__name__}"
    return None


def table_records(path: Path, dialect: dict) -> Iterator[tuple[int, list[str]]]:
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
    """(line, fields, header fields) of the first row with more fields than the header (the table
    reader fills a row with fewer fields with missing values)."""
    try:
        records = table_records(path, dialect)
        _, header = next(records)
        for line, row in records:
            if len(row) > len(header):
                return line, len(row), len(header)
    except (csv.Error, StopIteration):
        return None
    return None
