"""Multiple-choice examples: a question (after an optional context) with its options, each option
encoded with the question as one row, as transformers' multiple-choice example recipe does.

The options are a list of texts or the Hub's `{"label": ["A", ...], "text": [...]}` (the
`commonsense_qa` schema), and the answer is an option's index, its label ("A") or its text. An
example may have fewer options than another: a batch pads its examples to the most options with
rows that `choice_mask` marks absent (modeling.heads.option_scores keeps them from being chosen).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from datasets import DatasetDict
from transformers import DataCollatorForMultipleChoice, PreTrainedTokenizerBase

from mtl_nlp.common.errors import DataError
from mtl_nlp.common.tokenizing import option_pairs
from mtl_nlp.registry import TaskSpec

HUB_ANSWER_COLUMN = "answerKey"  # where the Hub's commonsense_qa keeps the answer's option label
CHOICE_MASK = "choice_mask"  # batch key: 1 for an example's options, 0 for the padding ones
INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def with_hub_answer_column(spec: TaskSpec, splits: DatasetDict) -> DatasetDict:
    """The splits with the Hub's `answerKey` read as the label column, when the task keeps the
    default label column (`label`) and the data has answerKey instead."""
    renamed = DatasetDict(splits)
    for split, dataset in splits.items():
        columns = dataset.column_names or []
        if spec.label_column not in columns and spec.label_column == "label" and HUB_ANSWER_COLUMN in columns:
            renamed[split] = dataset.rename_column(HUB_ANSWER_COLUMN, spec.label_column)
    return renamed


def option_texts(value: Any, task: str, where: str) -> tuple[list[str], list[str] | None]:
    """(the option texts, their labels or None) of one example's options cell."""
    labels = None
    if isinstance(value, Mapping):
        if "text" not in value:
            raise DataError(f"task {task!r}, {where}: the options mapping has no `text` list (keys: "
                            f"{', '.join(map(str, value))})")
        labels = [str(label) for label in value.get("label") or []] or None
        value = value["text"]
    if not isinstance(value, list | tuple) or not value:
        raise DataError(f"task {task!r}, {where}: the question has no options (got {value!r})")
    texts = [option for option in value if isinstance(option, str) and option.strip()]
    if len(texts) != len(value):
        raise DataError(f"task {task!r}, {where}: every option must be a non-empty text, got {list(value)!r}")
    if labels is not None and len(labels) != len(texts):
        raise DataError(f"task {task!r}, {where}: {len(labels)} option labels for {len(texts)} options")
    return list(texts), labels


def answer_index(answer: Any, texts: list[str], labels: list[str] | None, task: str, where: str) -> int:
    """The index of the answer among the options: an index, an option label or an option's text."""
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(texts):
        return answer
    if isinstance(answer, str):
        key = answer.strip()
        if labels is not None and key in labels:
            return labels.index(key)
        if key in texts:
            return texts.index(key)
        if key.isdigit() and int(key) < len(texts):
            return int(key)
    valid = ", ".join(labels or []) or f"0-{len(texts) - 1}"
    raise DataError(f"task {task!r}, {where}: answer {answer!r} is not one of the {len(texts)} options "
                    f"({valid}, or an option's text: {', '.join(texts)})")


def encode_choices(
    batch: dict[str, list], indices: list[int], *, tokenizer: PreTrainedTokenizerBase, spec: TaskSpec,
    max_length: int, split: str,
) -> dict[str, list]:
    """Each example's options as rows of (question, option), or (context, question + option) with a
    context; `labels`: the answer's index."""
    firsts, seconds, counts, answers = [], [], [], []
    for row, index in enumerate(indices):
        where = f"split {split}, row {index}"
        texts, labels = option_texts(batch[spec.choices_column][row], spec.name, where)
        answers.append(answer_index(batch[spec.label_column][row], texts, labels, spec.name, where))
        context = batch[spec.context_column][row] if spec.context_column else None
        first, second = option_pairs(batch[spec.question_column][row], texts, context)
        firsts += first
        seconds += second
        counts.append(len(texts))
    encoded = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
    grouped: dict[str, list] = {key: [] for key in encoded if key in INPUT_KEYS}
    start = 0
    for count in counts:
        for key in grouped:
            grouped[key].append(encoded[key][start:start + count])
        start += count
    grouped["labels"] = answers
    return grouped


class ChoicesCollator:
    """Pads a batch of multiple-choice examples to [batch, options, length] with transformers'
    DataCollatorForMultipleChoice, after giving every example the batch's most options (copies of
    its last one, marked absent in `choice_mask` [batch, options])."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.pad = DataCollatorForMultipleChoice(tokenizer)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        most = max(len(feature["input_ids"]) for feature in features)
        mask, padded = [], []
        for feature in features:
            count = len(feature["input_ids"])
            mask.append([1] * count + [0] * (most - count))
            rows = {key: list(feature[key]) + [feature[key][-1]] * (most - count)
                    for key in INPUT_KEYS if key in feature}
            padded.append({**rows, "labels": feature["labels"]})
        batch = self.pad(padded)
        batch[CHOICE_MASK] = torch.tensor(mask)
        return batch
