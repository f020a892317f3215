"""Task metrics: accuracy and macro-F1 for classification, seqeval entity P/R/F1 for tagging."""

from __future__ import annotations

from seqeval.metrics import f1_score, precision_score, recall_score

MAIN_METRIC = {"classification": "accuracy", "token_classification": "f1"}


def classification_metrics(gold: list[str], predicted: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1 over the labels present in gold or predictions."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    accuracy = sum(g == p for g, p in zip(gold, predicted)) / len(gold)
    f1s = []
    for label in sorted(set(gold) | set(predicted)):
        tp = sum(g == label and p == label for g, p in zip(gold, predicted))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s)}


def tagging_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 on word-level tag sequences.

    seqeval's default mode, which scores like the CoNLL-2003 conlleval script (an I- tag after
    O opens an entity), so figures compare with published ones.
    """
    scores = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    if not any(gold) and not any(predicted):
        return scores
    kwargs = {"zero_division": 0}
    scores["precision"] = float(precision_score(gold, predicted, **kwargs))
    scores["recall"] = float(recall_score(gold, predicted, **kwargs))
    scores["f1"] = float(f1_score(gold, predicted, **kwargs))
    return scores


def overall_score(metrics: dict[str, dict[str, float]], task_types: dict[str, str]) -> float:
    """Mean over tasks of each task's main metric (accuracy, or entity F1 for tagging)."""
    values = [metrics[task][MAIN_METRIC[task_types[task]]] for task in metrics]
    return sum(values) / len(values) if values else 0.0
