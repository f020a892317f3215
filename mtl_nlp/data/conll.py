"""Reader for CoNLL-style files: one word per line, the tag in the last column, blank lines
between sentences, `-DOCSTART-` lines between documents."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from mtl_nlp.common.errors import MtlNlpError

logger = logging.getLogger(__name__)

# Columns are separated by spaces and tabs only: a word may hold any other character, a
# non-breaking or thin space ("10\u202f000") or a control character included.
COLUMN_SEPARATOR = re.compile(r"[ \t]+")
DOCSTART = "-DOCSTART-"
SHOWN_CHARS = 80  # of a bad line, in an error message


class ConllFormatError(MtlNlpError, ValueError):
    """A CoNLL line that cannot be read; the message names the file and the line."""


def _shown(line: str) -> str:
    return repr(line if len(line) <= SHOWN_CHARS else line[:SHOWN_CHARS] + "...")


def _check_decoded(path: Path, number: int, line: str) -> None:
    """Raise a ConllFormatError naming the line when it holds bytes that are not UTF-8 (read as
    lone surrogates by the `surrogateescape` error handler)."""
    if line.isascii():
        return
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConllFormatError(
            f"{path}:{number}: byte 0x{ord(line[exc.start]) - 0xDC00:02x} at column {exc.start + 1} is "
            "not UTF-8; save the file as UTF-8"
        ) from None


def iter_conll_sentences(path: str | Path) -> Iterator[tuple[int, list[str], list[str]]]:
    """Yield (first line number, words, tags) for each sentence of a CoNLL file.

    The file is UTF-8, with or without a byte order mark, and lines end with \\n, \\r\\n or \\r.
    Columns are separated by runs of spaces or tabs (any other character, e.g. a non-breaking
    space, belongs to the word). The word is the first column and the tag the last one; middle
    columns (POS, chunk) are ignored. Blank or whitespace-only lines end a sentence, and so does a
    `-DOCSTART-` line (which is skipped). A line number counts from 1 as an editor shows it.
    """
    path = Path(path)
    words: list[str] = []
    tags: list[str] = []
    start = 0
    docstarts = 0
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            _check_decoded(path, number, line)
            if not line.strip():
                if words:
                    yield start, words, tags
                words, tags = [], []
                continue
            content = line.strip(" \t")
            columns = COLUMN_SEPARATOR.split(content)
            if columns[0] == DOCSTART:
                docstarts += 1
                if words:  # a document boundary ends the sentence before it
                    yield start, words, tags
                words, tags = [], []
                continue
            if len(columns) < 2:
                raise ConllFormatError(
                    f"{path}:{number}: line {_shown(content)} has no tag column; expected "
                    "`word [other columns] tag` separated by spaces or tabs"
                )
            if not words:
                start = number
            words.append(columns[0])
            tags.append(columns[-1])
    if words:
        yield start, words, tags
    if docstarts:
        logger.info("%s: skipped %d -DOCSTART- lines", path, docstarts)


def read_conll(
    path: str | Path, tokens_column: str = "tokens", tags_column: str = "tags"
) -> Iterator[dict[str, object]]:
    """Rows for `datasets.Dataset.from_generator`: {tokens_column, tags_column, "line"}.

    A file without a single sentence is an error naming it (a split cannot be empty)."""
    empty = True
    for line, words, tags in iter_conll_sentences(path):
        empty = False
        yield {tokens_column: words, tags_column: tags, "line": line}
    if empty:
        raise ConllFormatError(
            f"{path}: no sentences; the file is empty or holds only blank and {DOCSTART} lines"
        )
