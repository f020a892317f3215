"""Answer spans of extractive question answering, from a start/end head's scores: the one place
that turns them into answers, for evaluation and for the Predictor alike.

A context longer than max_length is read in overlapping windows; each window scores every token
as the answer's start and its end. The candidates of a window are the spans whose start and end
are both context tokens, end not before start, at most `max_answer_length` tokens long, among the
`n_best` best starts and ends. Candidates of every window are ranked by start score + end score
(the logits, comparable across windows: the ranking of transformers' run_qa post-processing);
each answer's `score` is its probability within its window, p(start) x p(end) with both softmaxes
over the window's context tokens (the score transformers' question-answering pipeline gave).

For a task whose questions may have no answer (SQuAD 2.0), the first token's start + end logit is
the no-answer score (what training teaches it for a window without the answer): the empty answer
wins when the lowest no-answer score over the windows beats every span, as transformers' run_qa
post-processing decides it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_BEST = 20  # starts and ends considered per window (run_qa's n_best_size)
MAX_ANSWER_LENGTH = 30  # tokens (run_qa's default)


@dataclass(frozen=True)
class WindowScores:
    """One window of a context: each token's start and end logit, and each token's character span
    in the raw context (None for the question, special tokens and padding)."""

    start_logits: Sequence[float]
    end_logits: Sequence[float]
    offsets: Sequence[tuple[int, int] | None]


@dataclass(frozen=True)
class Answer:
    """A span of the context: its text, character offsets (end exclusive), ranking logit and
    probability within its window."""

    text: str
    start: int
    end: int
    logit: float
    score: float

    def to_dict(self) -> dict[str, object]:
        """The answer as transformers' question-answering pipeline gave it."""
        return {"answer": self.text, "score": self.score, "start": self.start, "end": self.end}


def window_candidates(window: WindowScores, context: str, n_best: int = N_BEST,
                      max_answer_length: int = MAX_ANSWER_LENGTH) -> list[Answer]:
    """Every candidate span of one window (see the module docstring), best first."""
    starts = np.asarray(window.start_logits, dtype=np.float64)
    ends = np.asarray(window.end_logits, dtype=np.float64)
    inside = np.array([offset is not None for offset in window.offsets], dtype=bool)
    if not inside.any():
        return []
    start_probabilities = _softmax_over(starts, inside)
    end_probabilities = _softmax_over(ends, inside)
    best_starts = _top(starts, inside, n_best)
    best_ends = _top(ends, inside, n_best)
    candidates = []
    for first in best_starts:
        for last in best_ends:
            if last < first or last - first + 1 > max_answer_length:
                continue
            begin, stop = window.offsets[first][0], window.offsets[last][1]
            candidates.append(Answer(context[begin:stop], begin, stop, float(starts[first] + ends[last]),
                                     float(start_probabilities[first] * end_probabilities[last])))
    return sorted(candidates, key=lambda answer: -answer.logit)


def best_answers(windows: Sequence[WindowScores], context: str, top_k: int = 1, n_best: int = N_BEST,
                 max_answer_length: int = MAX_ANSWER_LENGTH, no_answer: bool = False) -> list[Answer]:
    """The `top_k` best answers over every window of one context (a span that two windows both
    hold counts once, with its better logit); [] when no window holds a context token. With
    `no_answer`, the empty answer ranks by the lowest no-answer score among them."""
    found: dict[tuple[int, int], Answer] = {}
    for window in windows:
        for answer in window_candidates(window, context, n_best, max_answer_length):
            kept = found.get((answer.start, answer.end))
            if kept is None or answer.logit > kept.logit:
                found[(answer.start, answer.end)] = answer
    ranked = list(found.values())
    if no_answer and windows:
        ranked.append(_empty_answer(windows))
    return sorted(ranked, key=lambda answer: -answer.logit)[:top_k]


def _empty_answer(windows: Sequence[WindowScores]) -> Answer:
    """The empty answer, scored by the window whose first token scores lowest as no answer; its
    probability: p(start) x p(end) of that token, the softmaxes over it and the context."""
    def null(window: WindowScores) -> float:
        return float(window.start_logits[0] + window.end_logits[0])

    window = min(windows, key=null)
    inside = np.array([index == 0 or offset is not None for index, offset in enumerate(window.offsets)])
    start = _softmax_over(np.asarray(window.start_logits, dtype=np.float64), inside)[0]
    end = _softmax_over(np.asarray(window.end_logits, dtype=np.float64), inside)[0]
    return Answer("", 0, 0, null(window), float(start * end))


def _softmax_over(logits: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Softmax over the positions `inside`; 0 elsewhere."""
    shifted = np.where(inside, logits - logits[inside].max(), -np.inf)
    weights = np.exp(shifted)
    return weights / weights.sum()


def _top(logits: np.ndarray, inside: np.ndarray, count: int) -> list[int]:
    """The positions of the `count` highest logits among those `inside`, best first."""
    positions = np.flatnonzero(inside)
    order = np.argsort(-logits[positions], kind="stable")[:count]
    return [int(position) for position in positions[order]]
