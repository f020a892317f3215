"""Joint-NLU scores of served answers on ATIS test: intent accuracy, slot F1 and exact match
(the intent right and every slot right, JointBERT's sentence accuracy), for one checkpoint that
answers both tasks from one encoder pass, or for two single-task checkpoints (two passes).

    python -m recipes.benchmarks.joint_scores --data-dir ../shared/data \\
        --intent outputs/intent_run:atis_intent --slots outputs/slots_run:atis_slots

Two single-task models have no exact match of their own in metrics.json: this scores both kinds
of deployment the same way, on the Predictor's answers to the raw utterances.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtl_nlp.inference import Predictor
from mtl_nlp.registry import TaskSpec

from .answer_scores import Span, gold_examples, score_answers

ATIS_FILES = {"train": "atis/train.jsonl", "validation": "atis/valid.jsonl", "test": "atis/test.jsonl"}


def joint_exact_match(
    intents: Sequence[dict[str, Any]], entities: Sequence[list[dict[str, Any]]],
    gold_intents: Sequence[str], gold_spans: Sequence[set[Span]],
) -> float:
    """The share of examples whose answered intent is the gold one and whose answered entity
    spans are exactly the gold spans (every slot right, none extra)."""
    if not gold_intents:
        return 0.0
    right = 0
    for intent, found, gold_intent, spans in zip(intents, entities, gold_intents, gold_spans):
        answered = {(entity["label"], entity["start"], entity["end"]) for entity in found}
        right += intent["label"] == gold_intent and answered == spans
    return right / len(gold_intents)


def _answers(checkpoint: Path, tasks: list[str], texts: list[str]) -> dict[str, list]:
    predictor = Predictor.from_pretrained(checkpoint)
    answered = predictor.predict(texts, tasks=tasks)
    return {task: [answer[task] for answer in answered] for task in tasks}


def served_joint_scores(intent: tuple[Path, str], slots: tuple[Path, str], data_dir: str) -> dict[str, float]:
    """{"intent_accuracy", "slot_f1", "exact_match", "encoder_passes"} of the answers of
    `intent` = (checkpoint, task) and `slots` = (checkpoint, task) to ATIS test."""
    intent_spec = TaskSpec(name=intent[1], type="classification", format="json", data_files=ATIS_FILES,
                           label_column="intent")
    slot_spec = TaskSpec(name=slots[1], type="token_classification", format="json", data_files=ATIS_FILES)
    texts, gold_intents = gold_examples(intent_spec, data_dir, [])
    slot_texts, gold_spans = gold_examples(slot_spec, data_dir, [])
    if texts != slot_texts:
        raise ValueError("ATIS texts differ from their words joined by spaces")
    if intent[0] == slots[0]:  # one model answers both from one encoder pass
        answers = _answers(intent[0], [intent[1], slots[1]], texts)
    else:
        answers = {**_answers(intent[0], [intent[1]], texts), **_answers(slots[0], [slots[1]], texts)}
    return {
        "intent_accuracy": score_answers("classification", answers[intent[1]], gold_intents),
        "slot_f1": score_answers("token_classification", answers[slots[1]], gold_spans),
        "exact_match": joint_exact_match(answers[intent[1]], answers[slots[1]], gold_intents, gold_spans),
        "encoder_passes": 1 if intent[0] == slots[0] else 2,
    }


def _checkpoint_task(text: str) -> tuple[Path, str]:
    directory, _, task = text.rpartition(":")
    if not directory:
        raise argparse.ArgumentTypeError(f"{text!r}: give DIR:TASK")
    return Path(directory), task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="the benchmark data folder (../shared/data)")
    parser.add_argument("--intent", required=True, type=_checkpoint_task, help="DIR:TASK answering intents")
    parser.add_argument("--slots", required=True, type=_checkpoint_task, help="DIR:TASK answering slots")
    args = parser.parse_args()
    scores = served_joint_scores(args.intent, args.slots, args.data_dir)
    print(" ".join(f"{name}={value:.4f}" if isinstance(value, float) else f"{name}={value}"
                   for name, value in scores.items()))


if __name__ == "__main__":
    main()
