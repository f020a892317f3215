"""Test scores of Predictor answers (what a served model returns), against a task's gold labels.

Classification: accuracy of the answered label. Tagging: entity-level micro F1 of the answered
character spans against the gold BIO spans of the words joined by single spaces (exact label and
boundaries, as seqeval counts entities). Used to check that a faster engine keeps the scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtl_nlp.data.loading import load_task_splits
from mtl_nlp.inference.entities import bio_spans
from mtl_nlp.registry import TaskSpec

Span = tuple[str, int, int]  # (label, start, end) character offsets


def gold_examples(
    spec: TaskSpec, data_dir: str | None, labels: Sequence[str]
) -> tuple[list[str], list[Any]]:
    """(texts, gold answers) of the task's test split (validation without one): gold labels for
    classification, sets of entity spans for tagging; integer labels are indices into `labels`."""
    splits = load_task_splits(spec, data_dir=data_dir)
    rows = splits["test" if "test" in splits else "validation"]
    if spec.type == "token_classification":
        examples = [word_spans(words, [_name(tag, labels) for tag in tags])
                    for words, tags in zip(rows[spec.tokens_column], rows[spec.tags_column])]
        return [text for text, _ in examples], [spans for _, spans in examples]
    if spec.type != "classification":
        raise ValueError(f"task {spec.name!r}: scoring answers supports classification and tagging")
    return list(rows[spec.text_column]), [_name(label, labels) for label in rows[spec.label_column]]


def word_spans(words: Sequence[str], tags: Sequence[str]) -> tuple[str, set[Span]]:
    """The words joined by spaces, and the character spans of their BIO entities."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    spans = {(label, starts[first], starts[end - 1] + len(words[end - 1]))
             for label, first, end in bio_spans(list(tags))}
    return " ".join(words), spans


def score_answers(task_type: str, answers: Sequence[Any], gold: Sequence[Any]) -> float:
    """Accuracy (classification) or entity micro F1 (tagging) of Predictor answers for one task."""
    if task_type == "token_classification":
        found = correct = expected = 0
        for entities, spans in zip(answers, gold):
            predicted = {(e["label"], e["start"], e["end"]) for e in entities}
            found, expected = found + len(predicted), expected + len(spans)
            correct += len(predicted & spans)
        precision = correct / found if found else 0.0
        recall = correct / expected if expected else 0.0
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return sum(answer["label"] == label for answer, label in zip(answers, gold)) / len(gold)


def _name(value: Any, labels: Sequence[str]) -> str:
    return labels[value] if isinstance(value, int) and not isinstance(value, bool) else str(value)
