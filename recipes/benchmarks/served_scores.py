"""Evaluated against served scores: what metrics.json reports for a checkpoint's test split, and
what its Predictor's answers score on the same test set, read as raw text.

    python -m recipes.benchmarks.served_scores DIR [DIR ...] --data-dir ../shared/data [--tasks conll2003]

Evaluation scores a tagging task on the dataset's own words; the Predictor reads the words joined
by spaces and splits them as the tokenizer does, so a gap between the two columns is what a user
of the served model loses (entities broken at punctuation inside a word, for example).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mtl_nlp.common.task_types import MAIN_METRIC
from mtl_nlp.inference import Predictor
from mtl_nlp.modeling.model import read_checkpoint_config
from mtl_nlp.registry import resolve_tasks
from mtl_nlp.reports.run_results import read_metrics

from .answer_scores import gold_examples, score_answers

SERVED_TYPES = ("token_classification", "classification")  # the answers score_answers reads


def served_scores(directory: Path, data_dir: str, tasks: list[str] | None) -> dict[str, tuple[float, float]]:
    """{task: (test score in metrics.json, test score of the Predictor's answers)}, for the
    classification and tagging tasks (all of them, or `tasks`); the tasks' data come from the run
    config saved in the checkpoint (built-in tasks read `data_dir`)."""
    try:
        evaluated = read_metrics(directory)
    except FileNotFoundError as error:
        raise SystemExit(f"{error}: served_scores compares a finished run's test metrics") from None
    predictor = Predictor.from_pretrained(directory)
    scored = [task for task in predictor.tasks if predictor.model.head_configs[task].type in SERVED_TYPES]
    unknown = sorted(set(tasks or []) - set(scored))
    if unknown:
        raise SystemExit(f"{directory}: cannot score task(s) {unknown}; scorable tasks: {', '.join(scored)}")
    entries = read_checkpoint_config(directory)["run_config"]["tasks"]
    specs = {spec.name: spec for spec in resolve_tasks(entries)}
    scores = {}
    for task in tasks or scored:
        head = predictor.model.head_configs[task]
        texts, gold = gold_examples(specs[task], data_dir, head.labels)
        answers = [answer[task] for answer in predictor.predict(texts, tasks=[task])]
        scores[task] = (evaluated[task][MAIN_METRIC[head.type]], score_answers(head.type, answers, gold))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data-dir", required=True, help="the benchmark data folder (../shared/data)")
    parser.add_argument("--tasks", nargs="*", help="score only these tasks (default: all)")
    args = parser.parse_args()
    print("| checkpoint | task | evaluated (metrics.json) | served (Predictor on raw text) | gap |")
    print("|---|---|---|---|---|")
    for directory in args.checkpoints:
        for task, (evaluated, served) in served_scores(directory, args.data_dir, args.tasks).items():
            print(f"| {directory.name} | {task} | {evaluated:.4f} | {served:.4f} | "
                  f"{100 * (served - evaluated):+.2f} pts |", flush=True)


if __name__ == "__main__":
    main()
