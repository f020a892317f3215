"""Predictor: raw texts in, every task's answer out, from one encoder pass per batch."""

from __future__ import annotations

import contextlib
import json
from bisect import bisect_right
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import AutoTokenizer

from mtl_nlp.modeling.model import MultiTaskModel, read_checkpoint_config
from mtl_nlp.spans import bio_spans, split_words
from mtl_nlp.training.precision import resolve_mixed_precision


class Predictor:
    """Answers every task of a trained checkpoint for raw strings.

    Classification tasks give {"label", "score"}; tagging tasks give a list of entities
    {"label", "text", "start", "end", "score"} with character offsets into the input text.
    Texts are batched by length so padding stays small.
    """

    def __init__(
        self, model: MultiTaskModel, tokenizer: Any, max_length: int = 512, batch_size: int = 32,
        device: str | torch.device | None = None, mixed_precision: str = "auto",
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_length = min(max_length, getattr(tokenizer, "model_max_length", max_length))
        self.batch_size = batch_size
        self.precision = resolve_mixed_precision(mixed_precision, self.device.type == "cpu")

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> Predictor:
        """Load a checkpoint directory written by training (or MultiTaskModel.save_pretrained)."""
        config = read_checkpoint_config(directory)
        model = MultiTaskModel.from_pretrained(directory)
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        kwargs.setdefault("max_length", config.get("max_length", 512))
        return cls(model, tokenizer, **kwargs)

    @property
    def tasks(self) -> list[str]:
        return self.model.task_names

    def predict(
        self, texts: str | list[str], tasks: list[str] | None = None
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Predictions for one text (a dict) or a list of texts (a list of dicts, in order)."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        for index, text in enumerate(batch):
            if not isinstance(text, str):
                raise TypeError(f"text {index} is {type(text).__name__}, expected str")
        tasks = tasks or self.tasks
        unknown = sorted(set(tasks) - set(self.tasks))
        if unknown:
            raise KeyError(f"unknown task(s) {unknown}; this model has: {', '.join(self.tasks)}")
        results: list[dict[str, Any] | None] = [None] * len(batch)
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
        for begin in range(0, len(order), self.batch_size):
            indices = order[begin : begin + self.batch_size]
            for index, result in zip(indices, self._predict_batch([batch[i] for i in indices], tasks)):
                results[index] = result
        return results[0] if single else results

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    @torch.no_grad()
    def _predict_batch(self, texts: list[str], tasks: list[str]) -> list[dict[str, Any]]:
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=True,
            return_offsets_mapping=True, return_tensors="pt",
        )
        offsets = encoded.pop("offset_mapping").tolist()
        inputs = {key: value.to(self.device) for key, value in encoded.items()}
        with self._autocast():
            logits = self.model.forward_all(**inputs, tasks=tasks)
        probabilities = {task: torch.softmax(value.float(), dim=-1).cpu() for task, value in logits.items()}
        results = []
        for row, text in enumerate(texts):
            result = {}
            for task in tasks:
                config = self.model.head_configs[task]
                if config.type == "token_classification":
                    result[task] = entities(text, offsets[row], probabilities[task][row], config.labels)
                else:
                    score, label = probabilities[task][row].max(dim=-1)
                    result[task] = {"label": config.labels[int(label)], "score": float(score)}
            results.append(result)
        return results


def first_token_of_each_word(
    words: list[tuple[int, int]], offsets: list[list[int]]
) -> dict[int, int]:
    """{word index: index of its first subword token}, from the tokenizer's character offsets.

    Special and padding tokens have empty offsets and belong to no word; words cut off by
    truncation are absent. A token whose offsets begin with the space before a word belongs to
    that word.
    """
    starts = [start for start, _ in words]
    first: dict[int, int] = {}
    for token, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        word = bisect_right(starts, start) - 1
        if word < 0 or start >= words[word][1]:
            # Some SentencePiece tokenizers start a token's offsets at the space before the word.
            word += 1
            if word >= len(words) or words[word][0] >= end:
                continue
        if word not in first:
            first[word] = token
    return first


def entities(
    text: str, offsets: list[list[int]], probabilities: Tensor, labels: list[str]
) -> list[dict[str, Any]]:
    """Entities of one text from its per-token tag probabilities (first subword of each word)."""
    words = split_words(text)
    first = first_token_of_each_word(words, offsets)
    scores, tags = probabilities.max(dim=-1)
    word_tags = [labels[int(tags[first[w]])] if w in first else "O" for w in range(len(words))]
    word_scores = [float(scores[first[w]]) if w in first else 0.0 for w in range(len(words))]
    found = []
    for label, begin, end in bio_spans(word_tags):
        start, stop = words[begin][0], words[end - 1][1]
        found.append({
            "label": label, "text": text[start:stop], "start": start, "end": stop,
            "score": sum(word_scores[begin:end]) / (end - begin),
        })
    return found


def to_json_line(result: dict[str, Any]) -> str:
    """One prediction as a JSON line (used by `mtl-nlp predict`)."""
    return json.dumps(result, ensure_ascii=False)
