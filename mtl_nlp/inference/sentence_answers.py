"""The answers of sentence-level tasks (classification, regression, multilabel) for a batch, from
their heads' scores and decoding."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from mtl_nlp.modeling.heads import HeadConfig


def sentence_answers(
    config: HeadConfig, scores: Tensor, decoded: Tensor, all_scores: bool = False
) -> list[dict[str, Any]]:
    """One sentence-level task's answers for a batch, from its head's scores and decoding; with
    `all_scores` a classification answer also holds every label's probability."""
    if config.type == "regression":
        return [{"value": value} for value in scores.tolist()]
    if config.type == "multilabel":
        return [
            {"labels": [label for label, on in zip(config.labels, row_on) if on],
             "scores": dict(zip(config.labels, row_scores))}
            for row_scores, row_on in zip(scores.tolist(), decoded.tolist())
        ]
    chosen = scores.gather(1, decoded.long().unsqueeze(1)).squeeze(1)
    answers = [{"label": config.labels[index], "score": score}
               for index, score in zip(decoded.tolist(), chosen.tolist())]
    if all_scores:
        for answer, row_scores in zip(answers, scores.tolist()):
            answer["scores"] = dict(zip(config.labels, row_scores))
    return answers
