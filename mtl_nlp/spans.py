"""Decoding BIO tags into entity spans: the one place that does it."""

from __future__ import annotations


def bio_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entities as (label, first word, last word + 1) from BIO tags.

    Like conlleval: an I- tag that does not continue an entity of its type opens a new one. A tag
    that is not B-TYPE or I-TYPE with a non-empty TYPE ("O", and also "B", "I-", "S-X") is outside
    every entity.
    """
    spans: list[tuple[str, int, int]] = []
    label, start = None, 0
    for index, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        entity = prefix in ("B", "I") and kind != ""
        continues = entity and prefix == "I" and kind == label
        if label is not None and not continues:
            spans.append((label, start, index))
            label = None
        if entity and not continues:
            label, start = kind, index
    return spans
