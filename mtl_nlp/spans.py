"""Decoding BIO tags into entity spans: the one place that does it."""

from __future__ import annotations

import re

# Words as CoNLL-style NER data splits them: abbreviations ("U.S."), runs of letters and digits
# joined by - ' . & ("York-based", "3.5"), or a single symbol.
WORD_PATTERN = re.compile(r"(?:[^\W_]\.){2,}|\w+(?:[-'.&]\w+)*|[^\w\s]")


def split_words(text: str) -> list[tuple[int, int]]:
    """Character (start, end) of each word of a raw text, in order."""
    return [match.span() for match in WORD_PATTERN.finditer(text)]


def bio_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entities as (label, first word, last word + 1) from BIO tags.

    Like conlleval: an I- tag that does not continue an entity of its type opens a new one.
    """
    spans: list[tuple[str, int, int]] = []
    label, start = None, 0
    for index, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        continues = prefix == "I" and kind == label
        if label is not None and not continues:
            spans.append((label, start, index))
            label = None
        if prefix in ("B", "I") and not continues:
            label, start = kind, index
    return spans
