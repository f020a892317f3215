"""Entity spans from tag probabilities: words as the tokenizer splits raw text, each tagged by its
first subword token, BIO tags decoded into spans with character offsets (one text, or one long
text read as overlapping windows). The one place that decodes BIO tags."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from mtl_nlp.common.long_texts import edge_context, merge_windows


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


def _word_tokens(offsets: list[list[int]], word_ids: list[int | None]) -> dict[int, list[int]]:
    """{word: [start, end, first token]} of the words with tokens in one encoded row."""
    words: dict[int, list[int]] = {}
    for token, (word, (start, end)) in enumerate(zip(word_ids, offsets)):
        if word is None or end <= start:
            continue
        if word not in words:
            words[word] = [start, end, token]
        else:
            words[word][0] = min(words[word][0], start)
            words[word][1] = max(words[word][1], end)
    return words


def tokenizer_words(
    offsets: list[list[int]], word_ids: list[int | None]
) -> list[tuple[int, int, int]]:
    """(start, end, first token) of each word of a text, in order, as the tokenizer's own
    normalizer and pre-tokenizer split it (the words transformers' pipelines use): whitespace and
    punctuation for BERT, each CJK ideograph a word of its own, accents kept in the offsets.

    Special and padding tokens belong to no word; words cut off by truncation are absent.
    """
    words = _word_tokens(offsets, word_ids)
    return [tuple(words[word]) for word in sorted(words)]


def entities(
    text: str, offsets: list[list[int]], word_ids: list[int | None], probabilities: Tensor,
    labels: list[str],
) -> list[dict[str, Any]]:
    """Entities of one text from its per-token tag probabilities, each word tagged by its first
    subword token (as in training, and as the pipelines' `aggregation_strategy="first"`)."""
    scores, tags = probabilities.float().max(dim=-1)
    return entities_from_tags(text, offsets, word_ids, scores.tolist(), tags.tolist(), labels)


def entities_from_tags(
    text: str, offsets: list[list[int]], word_ids: list[int | None], scores: list[float],
    tags: list[int], labels: list[str],
) -> list[dict[str, Any]]:
    """`entities` from each token's most probable tag and its probability."""
    tagged = [(start, end, labels[tags[first]], scores[first])
              for start, end, first in tokenizer_words(offsets, word_ids)]
    return entities_from_words(text, tagged)


def windowed_text_entities(
    text: str, offsets: list[list[list[int]]], word_ids: list[list[int | None]],
    probabilities: list[Tensor], labels: list[str],
) -> list[dict[str, Any]]:
    """Entities of one text read as overlapping windows (the rows of one text in a tokenizer's
    overflow output). A word is tagged by a window holding its first subword token, the one where
    that token has the most context; a window that starts inside a word tags nothing for it."""
    windows = [_word_tokens(window_offsets, window_words)
               for window_offsets, window_words in zip(offsets, word_ids)]
    spans: dict[int, list[int]] = {}
    for window in windows:
        for word, (start, end, _) in window.items():
            span = spans.setdefault(word, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    candidates = []
    for index, (window, window_words, window_probabilities) in enumerate(
        zip(windows, word_ids, probabilities)
    ):
        content = [token for token, word in enumerate(window_words) if word is not None]
        scores, tags = window_probabilities.max(dim=-1)
        candidates.append({
            word: (
                edge_context(first - content[0], len(content), index == 0, index == len(windows) - 1),
                (labels[int(tags[first])], float(scores[first])),
            )
            for word, (start, _, first) in window.items() if start == spans[word][0]
        })
    merged = merge_windows(candidates)
    tagged = [(*spans[word], tag, score) for word, (tag, score) in merged.items()]
    return entities_from_words(text, tagged)


def entities_from_words(text: str, words: list[tuple[int, int, str, float]]) -> list[dict[str, Any]]:
    """Entities from the (start, end, tag, score) of a text's words in order: BIO spans, each
    scored by the mean of its words' tag probabilities."""
    found = []
    for label, begin, end in bio_spans([tag for _, _, tag, _ in words]):
        start, stop = _without_spaces(text, words[begin][0], words[end - 1][1])
        found.append({
            "label": label, "text": text[start:stop], "start": start, "end": stop,
            "score": sum(score for _, _, _, score in words[begin:end]) / (end - begin),
        })
    return found


def _without_spaces(text: str, start: int, stop: int) -> tuple[int, int]:
    """A span without the whitespace at its ends: SentencePiece tokenizers (DeBERTa-v3, XLM-R)
    give a word's first piece the offsets of the space before it."""
    while start < stop and text[start].isspace():
        start += 1
    while stop > start and text[stop - 1].isspace():
        stop -= 1
    return start, stop
