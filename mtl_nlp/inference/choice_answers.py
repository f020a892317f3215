"""The Predictor's answers for questions with options: each option encoded with its question as a
row, the rows of a batch of questions in one encoder pass, the chosen option's text and its
probability among the question's options."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtl_nlp.common.tokenizing import option_pairs
from mtl_nlp.inference.inputs import ChoiceInput


def choice_answers(predictor: Any, items: list[ChoiceInput], tasks: list[str]) -> list[dict[str, Any]]:
    """{task: {"label": the chosen option, "score": its probability}} for each question, in order;
    `predictor` gives the tokenizer, the batch size and the engine."""
    answers: list[dict[str, Any]] = []
    for begin in range(0, len(items), predictor.batch_size):
        batch = items[begin : begin + predictor.batch_size]
        logits = predictor._logits(_option_inputs(predictor, batch), tasks)
        chosen = {}
        for task in tasks:
            head = predictor.model.heads[task]
            probabilities, picks = head.scores(logits[task]).float(), head.decode(logits[task])
            picked = probabilities.gather(1, picks.unsqueeze(1)).squeeze(1)
            chosen[task] = list(zip(picks.tolist(), picked.tolist()))
        answers += [{task: {"label": item.choices[chosen[task][row][0]], "score": chosen[task][row][1]}
                     for task in tasks} for row, item in enumerate(batch)]
    return answers


def _option_inputs(predictor: Any, batch: list[ChoiceInput]) -> dict[str, Tensor]:
    """[questions, most options, length] inputs and the `choice_mask` of the options each has."""
    most = max(len(item.choices) for item in batch)
    firsts, seconds, mask = [], [], []
    for item in batch:
        padded = list(item.choices) + [item.choices[-1]] * (most - len(item.choices))  # masked out
        first, second = option_pairs(item.question, padded, item.context)
        firsts += first
        seconds += second
        mask.append([1] * len(item.choices) + [0] * (most - len(item.choices)))
    encoded = predictor.tokenizer(firsts, seconds, truncation=True, max_length=predictor.max_length,
                                  padding=True, return_tensors="pt")
    inputs = {key: value.view(len(batch), most, -1).to(predictor.device) for key, value in encoded.items()}
    inputs["choice_mask"] = torch.tensor(mask, device=predictor.device)
    return inputs
