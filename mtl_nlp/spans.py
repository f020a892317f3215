"""Decoding BIO tags into entity spans: the one place that does it."""

from __future__ import annotations

import re

# Words as CoNLL-style (Penn Treebank) NER data splits them: abbreviations ("U.S."), clitics
# as words of their own ("Germany" "'s", "do" "n't"), runs of letters and digits joined by
# - . & or an inner apostrophe ("York-based", "3.5", "O'Neill"), or a single symbol.
APOSTROPHE = "['’]"
CLITIC_SUFFIX = r"(?:s|re|ve|ll|d|m)\b"  # 's 're 've 'll 'd 'm
WORD_PATTERN = re.compile(
    rf"(?:[^\W_]\.){{2,}}"  # U.S.
    rf"|(?i:n{APOSTROPHE}t\b|{APOSTROPHE}{CLITIC_SUFFIX})"  # n't, 's
    rf"|\w+?(?=(?i:n{APOSTROPHE}t)\b)"  # do (of don't)
    rf"|\w+(?:[-.&]\w+|{APOSTROPHE}(?!(?i:{CLITIC_SUFFIX}))\w+)*"  # York-based, 3.5, O'Neill
    rf"|[^\w\s]"  # a symbol
)


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
