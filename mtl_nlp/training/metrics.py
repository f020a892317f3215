"""Task metrics: accuracy, macro-F1 and Matthews correlation for classification (and the positive
class's F1 of two-label tasks), seqeval entity P/R/F1 for tagging, Pearson/Spearman/MSE for
regression, micro- and macro-F1 for multilabel; the overall score and GLUE's average."""

from __future__ import annotations

import math

from seqeval.metrics import f1_score, precision_score, recall_score


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def choice_metrics(gold: list[int], chosen: list[int]) -> dict[str, float]:
    """Multiple choice: the share of questions whose chosen option is the answer."""
    if len(gold) != len(chosen):
        raise ValueError(f"{len(gold)} answers but {len(chosen)} choices")
    return {"accuracy": sum(g == c for g, c in zip(gold, chosen)) / len(gold) if gold else 0.0}


def classification_metrics(
    gold: list[str], predicted: list[str], positive: str | None = None
) -> dict[str, float]:
    """Accuracy, macro-F1 over the labels present in gold or predictions, and the Matthews
    correlation; with `positive` (the second label of a two-label task, as GLUE's MRPC F1 takes
    "equivalent"), also `f1`: that label's F1."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        empty = {"accuracy": 0.0, "macro_f1": 0.0, "matthews_correlation": 0.0}
        return empty if positive is None else {**empty, "f1": 0.0}
    accuracy = sum(g == p for g, p in zip(gold, predicted)) / len(gold)
    f1s = {}
    for label in sorted(set(gold) | set(predicted)):
        tp = sum(g == label and p == label for g, p in zip(gold, predicted))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted))
        f1s[label] = _f1(tp, fp, fn)
    scores = {"accuracy": accuracy, "macro_f1": sum(f1s.values()) / len(f1s),
              "matthews_correlation": matthews_correlation(gold, predicted)}
    if positive is not None:
        scores["f1"] = f1s.get(positive, 0.0)
    return scores


def matthews_correlation(gold: list[str], predicted: list[str]) -> float:
    """The Matthews correlation coefficient of a K-class confusion matrix (Gorodkin's R_K, which
    is the usual MCC for two classes): 0.0 when every gold or every predicted label is the same
    (undefined there), as scikit-learn reports it."""
    n = len(gold)
    if n == 0:
        return 0.0
    correct = sum(g == p for g, p in zip(gold, predicted))
    gold_counts: dict[str, int] = {}
    predicted_counts: dict[str, int] = {}
    for label in gold:
        gold_counts[label] = gold_counts.get(label, 0) + 1
    for label in predicted:
        predicted_counts[label] = predicted_counts.get(label, 0) + 1
    agreement = sum(gold_counts.get(label, 0) * count for label, count in predicted_counts.items())
    predicted_square = n * n - sum(count * count for count in predicted_counts.values())
    gold_square = n * n - sum(count * count for count in gold_counts.values())
    if predicted_square == 0 or gold_square == 0:
        return 0.0
    return (correct * n - agreement) / math.sqrt(predicted_square * gold_square)


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


def pearson(x: list[float], y: list[float]) -> float:
    """Pearson correlation; 0.0 when either side is constant (the correlation is undefined there,
    and 0.0 keeps a constant predictor from looking good in model selection)."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} values against {len(y)}")
    n = len(x)
    if n == 0:
        return 0.0
    mean_x, mean_y = sum(x) / n, sum(y) / n
    dx = [value - mean_x for value in x]
    dy = [value - mean_y for value in y]
    sxx, syy = sum(d * d for d in dx), sum(d * d for d in dy)
    if sxx == 0 or syy == 0:
        return 0.0
    return sum(a * b for a, b in zip(dx, dy)) / math.sqrt(sxx * syy)


def average_ranks(values: list[float]) -> list[float]:
    """Ranks from 1; tied values all get the mean of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        mean_rank = (start + end) / 2 + 1
        for position in range(start, end + 1):
            ranks[order[position]] = mean_rank
        start = end + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman correlation: Pearson of the average ranks (ties share their mean rank)."""
    return pearson(average_ranks(x), average_ranks(y))


def regression_metrics(gold: list[float], predicted: list[float]) -> dict[str, float]:
    """Pearson and Spearman correlation and mean squared error."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold values but {len(predicted)} predictions")
    if not gold:
        return {"pearson": 0.0, "spearman": 0.0, "mse": 0.0}
    mse = sum((g - p) ** 2 for g, p in zip(gold, predicted)) / len(gold)
    return {"pearson": pearson(predicted, gold), "spearman": spearman(predicted, gold), "mse": mse}


def multilabel_metrics(gold: list[list[int]], predicted: list[list[int]]) -> dict[str, float]:
    """Micro-F1 over every (example, label) decision, and macro-F1: the mean per-label F1 over
    the labels present in gold or predictions. Rows are 0/1 vectors over the task's labels;
    both scores are 0.0 when no label occurs at all."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold rows but {len(predicted)} predictions")
    width = len(gold[0]) if gold else 0
    counts = [[0, 0, 0] for _ in range(width)]  # tp, fp, fn per label
    for gold_row, predicted_row in zip(gold, predicted):
        if len(gold_row) != width or len(predicted_row) != width:
            raise ValueError(f"rows must all hold {width} labels")
        for label, (g, p) in enumerate(zip(gold_row, predicted_row)):
            if g and p:
                counts[label][0] += 1
            elif p:
                counts[label][1] += 1
            elif g:
                counts[label][2] += 1
    present = [c for c in counts if any(c)]
    if not present:
        return {"micro_f1": 0.0, "macro_f1": 0.0}
    micro = _f1(*(sum(c[i] for c in present) for i in range(3)))
    return {"micro_f1": micro, "macro_f1": sum(_f1(*c) for c in present) / len(present)}


def overall_score(metrics: dict[str, dict[str, float]], main_metrics: dict[str, str]) -> float:
    """Mean over tasks of each task's main metric (`main_metrics`: {task: metric name}, the
    entry's `metric`, else MAIN_METRIC of its type: accuracy, entity F1, Pearson, micro-F1).

    The heads of an entry of several heads count as tasks, each with its main metric; the entry's
    joint scores (exact match, not in `main_metrics`) stay out, so an entry weighs as its heads do.
    """
    values = [metrics[task][main_metrics[task]] for task in metrics if task in main_metrics]
    return sum(values) / len(values) if values else 0.0


EXACT_MATCH = "exact_match"


def exact_match(gold: dict[str, list], predicted: dict[str, list]) -> float:
    """The share of examples that every head gets entirely right (joint NLU's sentence accuracy,
    as JointBERT reports it: the intent right and every slot tag right). `gold` and `predicted`
    are {head: one answer per example, in the same example order}: a label, a word-level tag
    sequence or a 0/1 label row."""
    counts = {len(values) for values in (*gold.values(), *predicted.values())}
    if len(counts) > 1:
        raise ValueError(f"heads answer different numbers of examples: {sorted(counts)}")
    total = counts.pop() if counts else 0
    if total == 0:
        return 0.0
    right = sum(all(gold[head][index] == predicted[head][index] for head in gold) for index in range(total))
    return right / total


def recorded_main_metrics(
    metrics: dict[str, dict[str, float]], main_metrics: dict[str, str]
) -> dict[str, str]:
    """`main_metrics` with EXACT_MATCH for each entry scored jointly: what results files record, so
    a report finds a main figure for every key of `metrics` (the overall score ignores those)."""
    joint = {task: EXACT_MATCH for task, values in metrics.items()
             if task not in main_metrics and EXACT_MATCH in values}
    return {**main_metrics, **joint}
