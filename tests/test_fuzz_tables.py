"""Property-based tests of the local CSV / TSV / JSON-lines task files read by load_task_splits:
texts with arbitrary unicode, commas, quotes, tabs, control characters, numbers-looking text and
very long words, files with a BOM and \\n or \\r\\n line endings, are read back exactly, or
refused with a DataError naming the task, the file and the line at fault."""

from __future__ import annotations

import csv
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mtl_nlp import TaskSpec
from mtl_nlp.common.errors import DataError, MtlNlpError
from mtl_nlp.data.loading import load_task_splits

FUZZ = dict(derandomize=True, database=None, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SPECIAL = ',;"\'\t\r\n \xa0\u200b\u2028\x85\x0b\x0c\x00\x07\x1b\x1a\ufeff\ufffdé東🍕#'
CHARS = st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(SPECIAL))
# Texts a table reader could take for something else: numbers, booleans, NA spellings, quotes.
LOOKALIKES = ["1", "007", "-3.5", "1e5", "0x1F", "True", "false", "NA", "null", "None", "nan", "N/A",
              "#", '"', '""', '"quoted"', " ", "  \t", "1,000", "—"]
TEXTS = st.one_of(
    st.text(CHARS, max_size=20), st.text(CHARS, max_size=20), st.sampled_from(LOOKALIKES),
    st.builds(lambda text, size: (text * size)[:size], st.text(CHARS, min_size=1, max_size=5),
              st.integers(1000, 5000)),
)
LABELS = st.sampled_from(["pos", "neg", "Sci/Tech", "très bien", "a,b", 'say "hi"', "x y"])
NOT_UTF8 = [b"\xff", b"\x80", b"\xc3(", b"\xed\xa0\x80"]
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # as the table reader and an editor count lines


@dataclass
class TableFile:
    fmt: str
    content: bytes
    rows: list[tuple[str | None, str]]  # (text as it must be read back, label)
    lines: list[int]  # the file line each row starts on
    error_line: int | None  # the first line at fault
    lone_cr: bool  # an unquoted \r: a line break for every reader, so rows differ from `rows`


def _cell(cell: str, delimiter: str, quote: bool) -> str:
    if quote or any(char in cell for char in (delimiter, '"', "\r", "\n")):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _table_row(fmt: str, cells: list[str], newline: str, quote: bool = False) -> str:
    """A CSV (quoted when needed, or always), quoted TSV or plain TSV (no quoting) row."""
    if fmt == "tsv":
        return "\t".join(cells) + newline
    delimiter = "," if fmt == "csv" else "\t"
    return delimiter.join(_cell(cell, delimiter, quote) for cell in cells) + newline


@st.composite
def table_files(draw, fmt: str) -> TableFile:
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    header = "" if fmt == "json" else _table_row(fmt, ["text", "label"], newline)
    chunks = [b"\xef\xbb\xbf"] if draw(st.booleans()) else []
    chunks.append(header.encode())
    breaks = len(LINE_BREAK.findall(header))  # line breaks written so far
    rows, lines, error_line, lone_cr = [], [], None, False
    for _ in range(draw(st.integers(1, 6))):
        value, label = draw(TEXTS), draw(LABELS)
        faults = [None] * 6 + ["extra_field", "not_utf8"] + ([] if fmt == "json" else ["lone_cr"])
        fault = draw(st.sampled_from(faults))
        if fmt == "tsv" or fault == "lone_cr":  # unquoted TSV cannot hold a tab or a line break
            value = re.sub(r"[\t\r\n]", " ", value)
        if fmt == "json":
            raw = json.dumps({"text": value, "label": label}, ensure_ascii=draw(st.booleans()))
            if fault == "extra_field":  # a line that is not a JSON object of columns
                raw = draw(st.sampled_from([raw[:-1], "[1, 2]", '{"text": NaN, "label": "x"}', raw + "}",
                                            "'text'", '"text"', "{"]))
            raw += newline
        elif fault == "lone_cr":  # an unquoted cell holding a \r (and no delimiter, no quote)
            value = re.sub(r'[,"]', "", value)
            at = draw(st.integers(0, len(value)))
            value = value[:at] + "\r" + value[at:]
            raw = ("," if fmt == "csv" else "\t").join([value, _cell(label, ",", False)]) + newline
            lone_cr = True
        else:
            cells = [value, "extra", label] if fault == "extra_field" else [value, label]
            raw = _table_row(fmt, cells, newline, quote=draw(st.booleans()))
        encoded = raw.encode()
        if fault == "not_utf8":
            cut = draw(st.integers(0, len(encoded) - len(newline)))
            while cut and 0x80 <= encoded[cut] < 0xC0:  # not inside a character
                cut -= 1
            encoded = encoded[:cut] + draw(st.sampled_from(NOT_UTF8)) + encoded[cut:]
        if fault in ("extra_field", "not_utf8") and error_line is None:
            # The row's first line, or the line of the bad byte (a quoted cell may span lines).
            before = encoded.decode(errors="surrogateescape")
            if fault == "not_utf8":
                before = before[: min(i for i, c in enumerate(before) if "\udc80" <= c <= "\udcff")]
            error_line = breaks + 1 + (len(LINE_BREAK.findall(before)) if fault == "not_utf8" else 0)
        event(f"row: {fault or 'fine'}")
        chunks.append(encoded)
        rows.append((None if value == "" and fmt != "json" else value, label))
        lines.append(breaks + 1)
        breaks += len(LINE_BREAK.findall(raw))
    return TableFile(fmt, b"".join(chunks), rows, lines, error_line, lone_cr)


def _csv_module_rows(table: TableFile, path: Path) -> list[tuple[str | None, str | None]]:
    """The rows as Python's csv module reads the file (lines end at \n, \r\n or \r)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        quoting = csv.QUOTE_NONE if table.fmt == "tsv" else csv.QUOTE_MINIMAL
        records = [r for r in csv.reader(handle, delimiter="," if table.fmt == "csv" else "\t",
                                         quoting=quoting) if r]
    return [((r[0] or None), (r[1] or None) if len(r) > 1 else None) for r in records[1:]]


_names = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-tables").resolve()


@pytest.mark.parametrize("fmt", ["csv", "tsv", "tsv_quoted", "json"])
@settings(max_examples=40, **FUZZ)
@given(data=st.data())
def test_table_files_read_back_exactly_or_name_the_file_and_line(folder, fmt, data):
    """40 generated files per format (CSV, TSV, quoted TSV, JSON lines: 160 in all), each with 1-6
    rows of random texts (unicode, commas, quotes, tabs, control characters, number-like texts,
    5,000-character words), a BOM or not, \\n or \\r\\n line endings: the train split holds every text
    (an empty CSV/TSV cell reads as missing) and label exactly as written, and for tables the line
    each row starts on; a row with an extra field, a line that is not a JSON object or bytes that
    are not UTF-8 raise a DataError (an MtlNlpError) naming the task, the file and the first line at
    fault. A \\r alone in an unquoted cell is a line break: the rows are then those Python's csv
    module reads, or a DataError names a line. Nothing else is raised."""
    table = data.draw(table_files(fmt), label="table")
    suffix = {"csv": "csv", "tsv": "tsv", "tsv_quoted": "tsv", "json": "jsonl"}[table.fmt]
    path = folder / f"t{next(_names)}.{suffix}"
    path.write_bytes(table.content)
    spec = TaskSpec(name="cls", type="classification", format=table.fmt,
                    data_files={"train": str(path), "validation": str(path)})
    if table.error_line is not None:
        with pytest.raises(DataError) as caught:
            load_task_splits(spec, cache_dir=str(folder / "cache"))
        assert isinstance(caught.value, MtlNlpError)
        assert str(caught.value).startswith(f"task 'cls': {path} line {table.error_line}: "), table
        return
    try:
        train = load_task_splits(spec, cache_dir=str(folder / "cache"))["train"]
    except DataError as error:  # only an unquoted \r may be refused, naming its line
        assert table.lone_cr, error
        assert re.match(rf"task 'cls': {re.escape(str(path))} line \d+: ", str(error)), error
        return
    read = list(zip(train["text"], train["label"]))
    if table.lone_cr:  # a line break: the rows are those of a line-by-line reading
        assert read == _csv_module_rows(table, path)
    else:
        assert read == table.rows
        if table.fmt != "json":
            assert train["line"] == table.lines


@pytest.mark.parametrize(("fmt", "content", "message"), [
    ("csv", "text,label\n,extra,pos\nfine,neg\n", "line 2: 3 fields where the header has 2"),
    ("tsv", "text\tlabel\nfine\tpos\n\tx\tneg\n", "line 3: 3 fields where the header has 2"),
    ("csv", "text,label\nfine,pos\n\r,neg\n", "line 4: the text cell reads as 'neg' instead of ''"),
    ("tsv", "text\tlabel\n", r"has only a header \(line 1\) and no rows"),
    ("tsv", "", "is empty"),
    ("json", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n', "line 2: not valid JSON"),
    ("json", '{"text": "a", "label": "x"}\n{"text": 3, "label": "y"}\n', "line 2: 'text' is int 3"),
])
def test_files_the_properties_found_name_the_line(tmp_path, fmt, content, message):
    """Regressions: a first row with one field too many was read shifted (pandas took its first
    cell for an index); a \\r alone at the start of a line glued two rows; a file with only a
    header or nothing raised "Instruction 'train' corresponds to no data" / "No columns to parse";
    a broken JSON line was "in row 0" of some block; a number among JSON texts was dropped later
    as a missing text."""
    path = tmp_path / f"train.{fmt}"
    path.write_bytes(content.encode())
    spec = TaskSpec(name="cls", type="classification", format=fmt,
                    data_files={"train": str(path), "validation": str(path)})
    with pytest.raises(DataError, match=rf"^task 'cls': {re.escape(str(path))} {message}"):
        load_task_splits(spec, cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json"])
def test_bytes_that_are_not_utf8_name_the_line(tmp_path, fmt):
    """Regression: a JSON file kept such bytes in its strings (a UnicodeDecodeError from inside
    datasets when the text was read), a CSV/TSV error named no line."""
    rows = {"csv": b"text,label\nfine,pos\nM\xfcller,neg\n",
            "tsv": b"text\tlabel\nfine\tpos\nM\xfcller\tneg\n",
            "json": b'{"text": "fine", "label": "pos"}\n{"text": "M\xfcller", "label": "neg"}\n'}[fmt]
    path = tmp_path / f"train.{fmt}"
    path.write_bytes(rows)
    spec = TaskSpec(name="cls", type="classification", format=fmt,
                    data_files={"train": str(path), "validation": str(path)})
    line = 2 if fmt == "json" else 3
    expected = rf"{re.escape(str(path))} line {line}: byte 0xfc at column \d+ is not UTF-8"
    with pytest.raises(DataError, match=expected):
        load_task_splits(spec, cache_dir=str(tmp_path / "cache"))


def test_number_like_texts_stay_texts(tmp_path):
    """Regression: a TSV text column of "1", "007", "True" was read as numbers (then dropped as
    missing texts, or "007" became 7)."""
    path = tmp_path / "train.tsv"
    path.write_text("text\tlabel\n1\tpos\n007\tneg\nTrue\tpos\n1e5\tneg\n")
    spec = TaskSpec(name="cls", type="classification", format="tsv",
                    data_files={"train": str(path), "validation": str(path)})
    train = load_task_splits(spec, cache_dir=str(tmp_path / "cache"))["train"]
    assert list(train["text"]) == ["1", "007", "True", "1e5"]
