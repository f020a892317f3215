"""Extractive QA by hand: answer spans from start/end scores over windows, and SQuAD's scoring."""

from __future__ import annotations

import math

import pytest

from mtl_nlp.common.answer_spans import WindowScores, best_answers, window_candidates
from mtl_nlp.training.squad_metrics import exact_match, normalize_answer, squad_scores, token_f1

CONTEXT = "Anna lives in Berlin now"
# [CLS] question [SEP] Anna lives in Berlin now [SEP]: the question and special tokens are outside
WORDS = [None, None, None, (0, 4), (5, 10), (11, 13), (14, 20), (21, 24), None]


def softmax(values: list[float]) -> list[float]:
    total = sum(math.exp(value) for value in values)
    return [math.exp(value) / total for value in values]


def test_the_best_span_is_the_best_start_and_end_inside_the_context():
    # the [CLS] token scores highest of all, but is not context: it never answers
    window = WindowScores([10, 0, 0, 1, 0, 0, 5, 0, 0], [10, 0, 0, 0, 0, 0, 4, 3, 0], WORDS)
    answers = window_candidates(window, CONTEXT)
    assert [(a.text, a.start, a.end, a.logit) for a in answers[:3]] == [
        ("Berlin", 14, 20, 9.0), ("Berlin now", 14, 24, 8.0), ("Anna lives in Berlin", 0, 20, 5.0)]
    starts, ends = softmax([1, 0, 0, 5, 0]), softmax([0, 0, 0, 4, 3])  # over the context tokens
    assert answers[0].score == pytest.approx(starts[3] * ends[3])
    assert answers[0].to_dict() == {"answer": "Berlin", "score": answers[0].score, "start": 14, "end": 20}


def test_spans_end_after_they_start_and_keep_to_the_maximum_length():
    window = WindowScores([0, 0, 0, 0, 0, 0, 5, 0, 0], [0, 0, 0, 6, 0, 0, 0, 0, 0], WORDS)
    answers = window_candidates(window, CONTEXT)
    assert all(a.start < a.end for a in answers)
    assert answers[0].text == "Anna"  # start 6 with end 3 is no span: Anna (start 3, end 3) wins
    longest = window_candidates(WindowScores([0, 0, 0, 9, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 9, 0], WORDS),
                                CONTEXT, max_answer_length=2)
    assert max(len(a.text.split()) for a in longest) == 2
    assert "Anna lives in Berlin now" not in {a.text for a in longest}


def test_n_best_limits_the_starts_and_ends_considered():
    window = WindowScores([0, 0, 0, 5, 4, 3, 2, 1, 0], [0, 0, 0, 1, 2, 3, 4, 5, 0], WORDS)
    answers = window_candidates(window, CONTEXT, n_best=2)
    assert {(a.start, a.end) for a in answers} == {(0, 24), (0, 20), (5, 24), (5, 20)}


def test_an_answer_across_a_window_boundary_comes_from_the_window_that_holds_it_whole():
    # window 1: "Anna lives in"; window 2 (overlapping by two words): "lives in Berlin now"
    first = WindowScores([0, 0, 0, 1, 3, 0, 0], [0, 0, 0, 0, 0, 2, 0], [None, None, None, (0, 4), (5, 10),
                                                                         (11, 13), None])
    second = WindowScores([0, 0, 4, -2, -2, -2, 0], [0, 0, 0, 0, 5, 0, 0], [None, None, (5, 10), (11, 13),
                                                                         (14, 20), (21, 24), None])
    best = best_answers([first, second], CONTEXT, top_k=2)
    assert [(a.text, a.logit) for a in best] == [("lives in Berlin", 9.0), ("lives in", 5.0)]
    # "lives in" is in both windows (logits 3 + 2 and 4 + 0): it counts once, with the better one


def test_a_window_of_no_context_answers_nothing():
    assert best_answers([WindowScores([1, 2], [1, 2], [None, None])], CONTEXT) == []


def test_squad_normalization():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("Theory of anathema") == "theory of anathema"  # articles as words only


def test_exact_match_and_token_f1_by_hand():
    assert exact_match("the Eiffel Tower.", "Eiffel tower") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    # in city of paris / paris france: 1 shared token, precision 1/4, recall 1/2
    assert token_f1("in the city of Paris", "Paris France") == pytest.approx(1 / 3)
    assert token_f1("", "") == 1.0 and token_f1("", "Paris") == 0.0 and token_f1("Rome", "Paris") == 0.0


def test_each_question_scores_its_best_gold_answer():
    scores = squad_scores(["the Broncos team", "Denver Broncos"], [["Denver Broncos", "Broncos"],
                                                                  ["Denver Broncos"]])
    # question 1: F1 1/2 against "denver broncos", 2/3 against "broncos"; EM 0. Question 2: 1 and 1.
    assert scores == {"exact_match": pytest.approx(0.5), "f1": pytest.approx((2 / 3 + 1) / 2)}


def test_an_unanswerable_question_is_answered_by_the_empty_answer_only():
    assert squad_scores(["", "Paris"], [[], []]) == {"exact_match": 0.5, "f1": 0.5}
    with pytest.raises(ValueError, match="2 predictions for 1 questions"):
        squad_scores(["a", "b"], [["a"]])


def test_the_empty_answer_wins_when_every_window_scores_no_answer_above_every_span():
    window = WindowScores([5, 0, 0, 1, 0, 0, 2, 0, 0], [5, 0, 0, 0, 0, 0, 2, 1, 0], WORDS)
    empty = best_answers([window], CONTEXT, no_answer=True)[0]
    assert (empty.text, empty.start, empty.end, empty.logit) == ("", 0, 0, 10.0)
    # p(start) x p(end) of the first token, the softmaxes over it and the context tokens
    assert empty.score == pytest.approx(softmax([5, 1, 0, 0, 2, 0])[0] * softmax([5, 0, 0, 0, 2, 1])[0])
    assert best_answers([window], CONTEXT)[0].text == "Berlin"  # a task of answerable questions only
    # the window scoring lowest as no answer decides: here one holding a span scored above it
    answering = WindowScores([-5, 0, 0, 1, 0, 0, 2, 0, 0], [-5, 0, 0, 0, 0, 0, 2, 1, 0], WORDS)
    assert best_answers([window, answering], CONTEXT, no_answer=True)[0].text == "Berlin"
