"""The Predictor's answers for questions with options: each option encoded with its question as a
row, the rows of a batch of questions in one encoder pass, the chosen option's text and its
probability among the question's options. Questions are batched in order of their longest row,
and each pass is padded to its own longest row."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtl_nlp.common.tokenizing import option_pairs
from mtl_nlp.inference.inputs import ChoiceInput


def choice_answers(predictor: Any, items: list[ChoiceInput], tasks: list[str]) -> list[dict[str, Any]]:
    """{task: {"label": the chosen option, "score": its probability}} for each question, in order;
    `predictor` gives the tokenizer, max_length, the batch size and the engine."""
    encoded, rows = _option_rows(predictor, items)
    longest = [max(len(encoded["input_ids"][row]) for row in item_rows) for item_rows in rows]
    order = sorted(range(len(items)), key=longest.__getitem__)
    answers: list[dict[str, Any]] = [{} for _ in items]
    for begin in range(0, len(order), predictor.batch_size):
        chosen = order[begin : begin + predictor.batch_size]
        inputs = _option_inputs(predictor, encoded, [rows[index] for index in chosen])
        logits = predictor._logits(inputs, tasks)
        for task in tasks:
            head = predictor.model.heads[task]
            probabilities, picks = head.scores(logits[task]).float(), head.decode(logits[task])
            picked = probabilities.gather(1, picks.unsqueeze(1)).squeeze(1)
            for index, pick, score in zip(chosen, picks.tolist(), picked.tolist()):
                answers[index][task] = {"label": items[index].choices[pick], "score": score}
    return answers


def _option_rows(predictor: Any, items: list[ChoiceInput]) -> tuple[Any, list[list[int]]]:
    """Every question's (question, option) rows tokenized unpadded, and each question's rows."""
    firsts: list[str] = []
    seconds: list[str] = []
    rows = []
    for item in items:
        first, second = option_pairs(item.question, list(item.choices), item.context)
        rows.append(list(range(len(firsts), len(firsts) + len(first))))
        firsts += first
        seconds += second
    return predictor.tokenizer(firsts, seconds, truncation=True, max_length=predictor.max_length), rows


def _option_inputs(predictor: Any, encoded: Any, batch: list[list[int]]) -> dict[str, Tensor]:
    """[questions, most options, length] inputs of the questions whose rows are `batch`, and the
    `choice_mask` of the options each has (a question with fewer repeats its last row, masked)."""
    most = max(len(rows) for rows in batch)
    padded = [row for rows in batch for row in rows + [rows[-1]] * (most - len(rows))]
    flat = predictor._padded(encoded, padded)
    inputs = {key: value.view(len(batch), most, -1) for key, value in flat.items()}
    mask = [[1] * len(rows) + [0] * (most - len(rows)) for rows in batch]
    inputs["choice_mask"] = torch.tensor(mask, device=predictor.device)
    return inputs
