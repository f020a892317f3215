"""From task specs to model-ready features: load, resolve labels, tokenize (cached)."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import DatasetDict
from transformers import (
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
)

from mtl_nlp.data.features import IGNORE_INDEX, encode_splits
from mtl_nlp.data.labels import build_label_mapper, resolve_labels
from mtl_nlp.data.loading import load_task_splits
from mtl_nlp.registry import TaskSpec


@dataclass
class TaskData:
    """One task's label set and its tokenized splits (train, validation, maybe test)."""

    spec: TaskSpec
    labels: list[str]
    splits: DatasetDict

    @property
    def eval_split(self) -> str:
        """The split scored at the end of a run: test, or validation when there is no test."""
        return "test" if "test" in self.splits else "validation"


def prepare_task_data(
    specs: list[TaskSpec], tokenizer: PreTrainedTokenizerBase, max_length: int,
    data_dir: str | None = None, cache_dir: str | None = None, seed: int = 42,
) -> dict[str, TaskData]:
    """Load and tokenize every task. Run it under `accelerator.main_process_first()` so the
    main process fills the datasets cache and the other processes read it."""
    prepared = {}
    for spec in specs:
        raw = load_task_splits(spec, data_dir=data_dir, cache_dir=cache_dir, seed=seed)
        labels = resolve_labels(spec, raw["train"])
        mapper = build_label_mapper(spec, raw["train"], labels)
        features = encode_splits(spec, raw, tokenizer, mapper, max_length)
        prepared[spec.name] = TaskData(spec=spec, labels=labels, splits=features)
    return prepared


def build_collator(task_type: str, tokenizer: PreTrainedTokenizerBase):
    """Dynamic padding to the longest example of each batch (labels padded with IGNORE_INDEX)."""
    if task_type == "token_classification":
        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)
    return DataCollatorWithPadding(tokenizer)
