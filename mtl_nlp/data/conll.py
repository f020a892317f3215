"""Reader for CoNLL-style files: one word per line, the tag in the last column, blank lines
between sentences, `-DOCSTART-` lines between documents."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from mtl_nlp.errors import MtlNlpError

logger = logging.getLogger(__name__)


class ConllFormatError(MtlNlpError, ValueError):
    """A CoNLL line that cannot be read; the message names the file and the line."""


def iter_conll_sentences(path: str | Path) -> Iterator[tuple[int, list[str], list[str]]]:
    """Yield (first line number, words, tags) for each sentence of a CoNLL file.

    The word is the first whitespace-separated column and the tag the last one; middle columns
    (POS, chunk) are ignored. Blank or whitespace-only lines end a sentence.
    """
    path = Path(path)
    words: list[str] = []
    tags: list[str] = []
    start = 0
    docstarts = 0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            columns = line.split()
            if not columns:
                if words:
                    yield start, words, tags
                words, tags = [], []
                continue
            if columns[0] == "-DOCSTART-":
                docstarts += 1
                continue
            if len(columns) < 2:
                raise ConllFormatError(
                    f"{path}:{number}: line {line.rstrip()!r} has no tag column; expected "
                    "`word [other columns] tag` separated by whitespace"
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
    """Rows for `datasets.Dataset.from_generator`: {tokens_column, tags_column, "line"}."""
    for line, words, tags in iter_conll_sentences(path):
        yield {tokens_column: words, tags_column: tags, "line": line}
