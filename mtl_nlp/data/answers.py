"""Extractive question answering examples: a question and its context, read as overlapping windows
of the context when they do not fit max_length together (the preprocessing of transformers'
question-answering example recipe), each window labelled with its answer's first and last token.

A window that does not hold the whole answer, and a question without an answer (SQuAD 2.0's
unanswerable ones), point at the first token (its start and end logits are the no-answer
score). Every window also keeps which example it reads (`example_index`), its row (`row`) and each
token's character span in the context (`offsets`, [-1, -1] for the question and special tokens);
the scored splits keep the context and the gold answers' texts too, so that answers are decoded
(common/answer_spans.py) and scored (training/squad_metrics.py) per example.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import PreTrainedTokenizerBase

from mtl_nlp.common.errors import DataError
from mtl_nlp.common.tokenizing import context_room
from mtl_nlp.registry import TaskSpec

OFFSETS_COLUMN = "offsets"
ROW_COLUMN = "row"  # a window's row in its split: the evaluation reads its offsets back by it
CONTEXT_COLUMN = "context"
GOLD_COLUMN = "gold"  # every gold answer's text
OUTSIDE = [-1, -1]  # the offsets of a token that is not in the context


def gold_answers(value: Any, context: str, task: str, where: str) -> list[tuple[str, int]]:
    """(text, character start) of each gold answer in an answers cell (the Hub's squad schema
    {"text": [...], "answer_start": [...]}), each checked to be in its context: at its start, else
    wherever the text occurs (SQuAD's dev set gives an answer's first occurrence at times)."""
    if not isinstance(value, Mapping) or "text" not in value:
        raise DataError(f"task {task!r}, {where}: answers must be {{\"text\": [...], \"answer_start\": "
                        f"[...]}}, got {value!r}")
    texts, starts = list(value["text"] or []), list(value.get("answer_start") or [])
    if len(starts) != len(texts):
        raise DataError(f"task {task!r}, {where}: {len(texts)} answer texts for {len(starts)} answer starts")
    answers = []
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"task {task!r}, {where}: an answer must be a non-empty text, got {text!r}")
        if not (isinstance(start, int) and context[start:start + len(text)] == text):
            start = context.find(text)
            if start < 0:
                raise DataError(f"task {task!r}, {where}: answer {text!r} is not in its context")
        answers.append((text, start))
    return answers


def encode_questions(
    batch: dict[str, list], indices: list[int], *, tokenizer: PreTrainedTokenizerBase, spec: TaskSpec,
    max_length: int, stride: int, split: str,
) -> dict[str, list]:
    """Windows of (question, context) rows with their answer's token span as `labels`."""
    contexts = batch[spec.context_column]
    answers = [gold_answers(value, context, spec.name, f"split {split}, row {index}")
               for value, context, index in zip(batch[spec.answers_column], contexts, indices)]
    questions = [question.lstrip() for question in batch[spec.question_column]]
    _check_room(tokenizer, questions, indices, spec, max_length, stride, split)
    encoded = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    owners = encoded.pop("overflow_to_sample_mapping")
    offsets = encoded.pop("offset_mapping")
    windows: dict[str, list] = {key: list(values) for key, values in encoded.items()}
    windows.update(labels=[], example_index=[], offsets=[])
    for window, owner in enumerate(owners):
        in_context = [part == 1 for part in encoded.sequence_ids(window)]
        spans = [list(span) if inside else OUTSIDE for span, inside in zip(offsets[window], in_context)]
        windows["labels"].append(_answer_tokens(spans, answers[owner][:1]))
        windows["example_index"].append(indices[owner])
        windows["offsets"].append(spans)
    if split != "train":  # what the scoring reads per example
        windows[CONTEXT_COLUMN] = [contexts[owner] for owner in owners]
        windows[GOLD_COLUMN] = [[text for text, _ in answers[owner]] for owner in owners]
    return windows


def _check_room(tokenizer: PreTrainedTokenizerBase, questions: list[str], indices: list[int], spec: TaskSpec,
                max_length: int, stride: int, split: str) -> None:
    """DataError naming the row of a question that leaves its context's windows no room beyond the
    stride they share (the tokenizer would fail, or read the context a token at a time)."""
    rooms = context_room(tokenizer, questions, max_length)
    tightest = min(range(len(rooms)), key=rooms.__getitem__)
    if rooms[tightest] <= stride:
        raise DataError(f"task {spec.name!r}, split {split}, row {indices[tightest]}: the question leaves "
                        f"its context {rooms[tightest]} of max_length={max_length} tokens, no more than the "
                        f"stride ({stride}) its windows share: raise max_length or lower stride")


def _answer_tokens(spans: list[list[int]], answer: list[tuple[str, int]]) -> list[int]:
    """[first token, last token] of the answer in a window, or [0, 0] (the first token: no
    answer) when the window does not hold all of it or there is none."""
    if not answer:
        return [0, 0]
    text, start = answer[0]
    end = start + len(text)
    inside = [index for index, span in enumerate(spans) if span != OUTSIDE]
    if not inside or spans[inside[0]][0] > start or spans[inside[-1]][1] < end:
        return [0, 0]
    first = next(index for index in inside if spans[index][1] > start)
    last = next(index for index in reversed(inside) if spans[index][0] < end)
    return [first, last]
