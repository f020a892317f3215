"""Per-class reports of the final evaluation: precision, recall, F1 and support for each label of
a classification task (and each label of a multilabel task), and for each entity type of a
tagging task (seqeval's report, scored like conlleval)."""

from __future__ import annotations

import warnings
from collections import Counter

from seqeval.metrics import classification_report as seqeval_report

ClassReport = dict[str, dict[str, float]]  # {label or entity type: {precision, recall, f1, support}}


def _row(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}


def classification_report(gold: list[str], predicted: list[str], labels: list[str]) -> ClassReport:
    """One row per label of the task, in label order (support = gold examples of the label);
    one pass over the examples, whatever the number of labels."""
    hits = Counter(g for g, p in zip(gold, predicted) if g == p)
    gold_counts, predicted_counts = Counter(gold), Counter(predicted)
    return {label: _row(hits[label], predicted_counts[label] - hits[label], gold_counts[label] - hits[label])
            for label in labels}


def multilabel_report(gold: list[list[int]], predicted: list[list[int]], labels: list[str]) -> ClassReport:
    """One row per label from 0/1 rows over the task's labels."""
    report = {}
    for index, label in enumerate(labels):
        tp = sum(g[index] and p[index] for g, p in zip(gold, predicted))
        fp = sum(not g[index] and p[index] for g, p in zip(gold, predicted))
        fn = sum(g[index] and not p[index] for g, p in zip(gold, predicted))
        report[label] = _row(tp, fp, fn)
    return report


def tagging_report(gold: list[list[str]], predicted: list[list[str]]) -> ClassReport:
    """One row per entity type (seqeval, conlleval-style), sorted by type."""
    if not any(gold) and not any(predicted):
        return {}
    with warnings.catch_warnings():  # its averages divide by zero when no entity is gold
        warnings.simplefilter("ignore", RuntimeWarning)
        raw = seqeval_report(gold, predicted, output_dict=True, zero_division=0)
    return {
        kind: {"precision": float(row["precision"]), "recall": float(row["recall"]),
               "f1": float(row["f1-score"]), "support": int(row["support"])}
        for kind, row in sorted(raw.items()) if not kind.endswith(" avg")
    }


def format_reports(reports: dict[str, ClassReport]) -> str:
    """The reports as plain-text tables, one per task."""
    blocks = []
    for task, report in reports.items():
        if not report:
            continue
        width = max(len(name) for name in [*report, "label"])
        lines = [f"{task}:", f"  {'label':<{width}}  precision  recall      f1  support"]
        for name, row in report.items():
            lines.append(f"  {name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                         f"{row['f1']:6.4f}  {int(row['support']):7d}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
