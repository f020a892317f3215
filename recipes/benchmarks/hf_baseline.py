"""The baseline a user would otherwise run: one task, HF `Trainer`, default random batches.

It trains on the very features mtl_nlp builds (same tokenization and label alignment; for
extractive QA the same context windows as transformers' run_qa preprocessing, scored with the
same span decoding as its post-processing; for multiple choice the rows of run_swag), so the
comparison isolates batching and the training loop. Run as a module so each arm gets a fresh
process:

    python -m recipes.benchmarks.hf_baseline --task conll2003 --data-dir ../shared/data --out r.json
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    Trainer,
    TrainingArguments,
)

import mtl_nlp  # noqa: F401  (registers the built-in tasks)
from mtl_nlp.common.precision import resolve_mixed_precision
from mtl_nlp.config import DEFAULT_MODEL
from mtl_nlp.data.choices import CHOICE_MASK
from mtl_nlp.data.features import FEATURE_COLUMNS
from mtl_nlp.data.pipeline import TaskData, build_collator, prepare_task_data
from mtl_nlp.modeling.encoder import load_tokenizer, resolve_model_path
from mtl_nlp.registry import get_task
from mtl_nlp.training.answer_evaluation import score_windows
from mtl_nlp.training.evaluation import tagged_sequences
from mtl_nlp.training.metrics import choice_metrics, classification_metrics, tagging_metrics

# the transformers models of the types with no label set (options, or spans of a context)
QUESTION_MODELS = {"multiple_choice": AutoModelForMultipleChoice,
                   "extractive_qa": AutoModelForQuestionAnswering}


class CountingCollator:
    """Wraps a collator and counts real and padded tokens of every batch it builds."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.real_tokens = 0
        self.padded_tokens = 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(features)
        self.real_tokens += int(batch["attention_mask"].sum())
        self.padded_tokens += batch["attention_mask"].numel()
        batch.pop(CHOICE_MASK, None)  # every question has its options: transformers' models take none
        labels = batch.get("labels")
        if labels is not None and labels.dim() == 2:  # extractive QA: [start, end] token positions
            batch["start_positions"], batch["end_positions"] = batch.pop("labels").unbind(dim=1)
        return batch


def _model_for(data: TaskData, model: str) -> torch.nn.Module:
    if data.spec.type in QUESTION_MODELS:  # no labels: options, or spans of a context
        return QUESTION_MODELS[data.spec.type].from_pretrained(resolve_model_path(model))
    auto = (AutoModelForTokenClassification if data.spec.type == "token_classification"
            else AutoModelForSequenceClassification)
    return auto.from_pretrained(
        resolve_model_path(model), num_labels=len(data.labels),
        id2label=dict(enumerate(data.labels)), label2id={name: i for i, name in enumerate(data.labels)},
    )


def score(data: TaskData, logits: Any, labels: np.ndarray, split: Any = None) -> dict[str, float]:
    """The same metrics mtl_nlp reports, from a Trainer's prediction output (extractive QA: the
    windows' start and end logits, decoded per question from `split` as mtl_nlp decodes them)."""
    if data.spec.type == "extractive_qa":
        starts, ends = logits
        return score_windows(split, {row: np.stack([starts[row], ends[row]], axis=-1).tolist()
                                     for row in range(len(starts))}, data.spec.no_answer)
    predictions = logits.argmax(-1).tolist()
    if data.spec.type == "multiple_choice":
        return choice_metrics(labels.tolist(), predictions)
    if data.spec.type == "token_classification":
        return tagging_metrics(*tagged_sequences(predictions, labels.tolist(), data.labels))
    return classification_metrics([data.labels[i] for i in labels.tolist()],
                                  [data.labels[i] for i in predictions])


def train_with_trainer(
    task: str, data_dir: str, model: str = DEFAULT_MODEL, epochs: float = 1.0, batch_size: int = 32,
    lr: float = 5e-5, warmup_ratio: float = 0.1, weight_decay: float = 0.01,
    mixed_precision: str = "auto", seed: int = 42, max_length: int = 128,
    max_train_examples: int | None = None, max_eval_examples: int | None = None, stride: int | None = None,
) -> dict[str, Any]:
    """Train `task` with the HF Trainer and return throughput, padding, memory and test scores."""
    tokenizer = load_tokenizer(model)
    data = prepare_task_data([get_task(task)], tokenizer, max_length, data_dir, seed=seed,
                             max_train_examples=max_train_examples,
                             max_eval_examples=max_eval_examples, stride=stride)[task]
    columns = [c for c in FEATURE_COLUMNS if c in data.splits["train"].column_names]
    train = data.splits["train"].select_columns(columns)
    collator = CountingCollator(build_collator(data.spec.type, tokenizer))
    use_cpu = not torch.cuda.is_available()
    precision = resolve_mixed_precision(mixed_precision, use_cpu)
    steps = math.ceil(len(train) / batch_size) * epochs
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=128, learning_rate=lr, num_train_epochs=epochs,
            warmup_steps=int(steps * warmup_ratio), weight_decay=weight_decay,
            bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=use_cpu,
            save_strategy="no", eval_strategy="no", report_to="none", logging_steps=100,
            seed=seed, disable_tqdm=True,
            # the features hold the model's inputs only; QA's `labels` become start/end positions
            # in the collator, which the Trainer would otherwise drop as no forward argument
            remove_unused_columns=False,
        )
        trainer = Trainer(model=_model_for(data, model), args=args, train_dataset=train,
                          data_collator=collator)
        output = trainer.train()
        seconds = output.metrics["train_runtime"]
        real, padded = collator.real_tokens, collator.padded_tokens
        scored = data.splits[data.eval_split]
        prediction = trainer.predict(scored.select_columns(columns))
    return {
        "task": task,
        "train_seconds": seconds,
        "real_tokens_per_second": real / seconds,
        "padding_fraction": 1 - real / padded,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "mixed_precision": precision,
        "test": score(data, prediction.predictions, prediction.label_ids, scored),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True, help="JSON file for the results")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--mixed-precision", default="auto")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-train-examples", type=int)
    parser.add_argument("--max-eval-examples", type=int)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--stride", type=int, help="tokens the windows of a long context share")
    args = parser.parse_args(argv)
    result = train_with_trainer(
        args.task, args.data_dir, args.model, args.epochs, args.batch_size, args.lr,
        mixed_precision=args.mixed_precision, seed=args.seed, max_length=args.max_length,
        max_train_examples=args.max_train_examples, max_eval_examples=args.max_eval_examples,
        stride=args.stride,
    )
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
