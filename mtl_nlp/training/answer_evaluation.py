"""Scoring an extractive QA task: every window's start and end logits gathered from every process,
each question answered by its best span over its windows (common/answer_spans.py), and the
answers scored against every gold answer with SQuAD's exact match and token F1."""

from __future__ import annotations

from collections import defaultdict

import torch
from accelerate import Accelerator
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader

from mtl_nlp.common.answer_spans import WindowScores, best_answers
from mtl_nlp.data.answers import CONTEXT_COLUMN, GOLD_COLUMN, OFFSETS_COLUMN, OUTSIDE, ROW_COLUMN
from mtl_nlp.training.squad_metrics import squad_scores

PADDED_LOGIT = -1e4  # a position one process pads and another holds: never an answer


def evaluate_answers(
    accelerator: Accelerator, model: nn.Module, task: str, loader: DataLoader, split: Dataset
) -> dict[str, float]:
    """{"exact_match", "f1"} of `task` over the windows `loader` gives of `split` (which holds
    each window's offsets, context and gold answers, read back by its row)."""
    logits_of: dict[int, list[list[float]]] = {}
    for batch in loader:
        batch.pop("labels")
        batch.pop("example_index")
        rows = batch.pop(ROW_COLUMN)
        logits = model(task=task, **batch)["logits"].float()
        logits = accelerator.pad_across_processes(logits, dim=1, pad_index=PADDED_LOGIT)
        gathered, gathered_rows = accelerator.gather_for_metrics((logits, rows))
        for row, window in zip(gathered_rows.tolist(), gathered.tolist()):
            logits_of[row] = window
    no_answer = accelerator.unwrap_model(model).head_configs[task].no_answer
    return score_windows(split, logits_of, no_answer)


def score_windows(split: Dataset, logits_of: dict[int, list[list[float]]], no_answer: bool = False
                  ) -> dict[str, float]:
    """SQuAD's scores of the answers decoded from each window's [length, 2] logits (by row);
    `no_answer`: the empty answer is an answer too."""
    rows = sorted(logits_of)
    windows: dict[int, list[WindowScores]] = defaultdict(list)
    contexts: dict[int, str] = {}
    golds: dict[int, list[str]] = {}
    kept = split.select(rows).select_columns(["example_index", OFFSETS_COLUMN, CONTEXT_COLUMN, GOLD_COLUMN])
    for row, window in zip(rows, kept):
        logits = torch.tensor(logits_of[row][: len(window[OFFSETS_COLUMN])])
        offsets = [None if span == OUTSIDE else tuple(span) for span in window[OFFSETS_COLUMN]]
        example = window["example_index"]
        windows[example].append(WindowScores(logits[:, 0].tolist(), logits[:, 1].tolist(), offsets))
        contexts[example], golds[example] = window[CONTEXT_COLUMN], window[GOLD_COLUMN]
    examples = sorted(windows)
    predictions = []
    for example in examples:
        found = best_answers(windows[example], contexts[example], no_answer=no_answer)
        predictions.append(found[0].text if found else "")
    return squad_scores(predictions, [golds[example] for example in examples])
