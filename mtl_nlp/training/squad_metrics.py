"""SQuAD's exact match and token F1, as its official evaluation script computes them: answers are
compared after normalization (lower case, punctuation and the articles a/an/the removed, spaces
collapsed), and each question scores its best match over all of its gold answers.

A question without a gold answer (SQuAD 2.0's unanswerable ones) is answered correctly by the
empty answer alone, as SQuAD 2.0's script scores it.

transformers no longer ships SQuAD's metric and the `evaluate` library loads it from the Hub, so
the script's few lines live here.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the official script's order)."""
    text = "".join(character for character in text.lower() if character not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the two answers are equal after normalization."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """F1 of the normalized answers' tokens (a bag of words); an empty answer scores 1 against an
    empty one and 0 against any other."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    shared = sum((Counter(predicted) & Counter(expected)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """{"exact_match", "f1"}: each question's best score over its gold answers (none: the empty
    answer), averaged over the questions."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    matches, f1s = [], []
    for prediction, answers in zip(predictions, golds):
        answers = list(answers) or [""]
        matches.append(max(exact_match(prediction, answer) for answer in answers))
        f1s.append(max(token_f1(prediction, answer) for answer in answers))
    return {"exact_match": sum(matches) / len(matches), "f1": sum(f1s) / len(f1s)}
