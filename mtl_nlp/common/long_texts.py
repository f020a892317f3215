"""Overlapping windows for tagging inputs longer than max_length, and the merge of their word
predictions: every word is scored, each by the window in which it has the most context.

A leaf module (no torch, no datasets): evaluation data and the Predictor share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

Prediction = TypeVar("Prediction")


def default_stride(max_length: int) -> int:
    """Tokens shared by consecutive windows when the config leaves `stride` unset."""
    return max_length // 4


def plan_word_windows(token_counts: Sequence[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges [start, end) covering every word of one example, in order.

    Each window holds at most `budget` tokens of whole words (a single word longer than that gets
    a window of its own, cut by the tokenizer); consecutive windows share the last whole words of
    the earlier one that fit in `stride` tokens, and every window starts at least one word later
    than the one before. An example that fits is one window.
    """
    windows: list[tuple[int, int]] = []
    start, count = 0, len(token_counts)
    while True:
        end, used = start, 0
        while end < count and (end == start or used + token_counts[end] <= budget):
            used += token_counts[end]
            end += 1
        windows.append((start, end))
        if end >= count:
            return windows
        next_start, shared = end, 0
        while next_start - 1 > start and shared + token_counts[next_start - 1] <= stride:
            next_start -= 1
            shared += token_counts[next_start]
        start = next_start


def edge_context(position: int, length: int, first: bool, last: bool) -> float:
    """Context of the item at `position` of a window of `length` items: its distance to the
    nearer edge where the window cuts the example (the example's own start and end cut nothing)."""
    before = math.inf if first else position
    after = math.inf if last else length - 1 - position
    return min(before, after)


def merge_windows(windows: Sequence[dict[int, tuple[float, Prediction]]]) -> dict[int, Prediction]:
    """{word: prediction} from each window's {word: (context, prediction)}: every word takes the
    prediction of the window where its context is largest (the earlier window on a tie), so a word
    seen by two windows is counted once."""
    best: dict[int, tuple[float, Prediction]] = {}
    for window in windows:
        for word, (context, prediction) in window.items():
            if word not in best or context > best[word][0]:
                best[word] = (context, prediction)
    return {word: best[word][1] for word in sorted(best)}


def merge_word_sequences(windows: Sequence[tuple[int, Sequence[Prediction]]]) -> list[Prediction]:
    """One example's word predictions from its windows, each given as (index of its first word,
    predictions of its consecutive words)."""
    total = max(start + len(words) for start, words in windows)
    scored = []
    for start, words in windows:
        first, last = start == 0, start + len(words) == total
        scored.append({
            start + offset: (edge_context(offset, len(words), first, last), prediction)
            for offset, prediction in enumerate(words)
        })
    merged = merge_windows(scored)
    if len(merged) != total:  # the windows of an example cover all its words
        missing = sorted(set(range(total)) - set(merged))
        raise ValueError(f"windows leave words {missing[:5]} of {total} uncovered")
    return list(merged.values())
