"""A mix of every task type as a `tasks=` override: an extractive QA task and a multiple-choice task
on small JSON-lines files, beside the demo tagger and classifier."""

from __future__ import annotations

import json
from pathlib import Path

from test_extractive_qa import write_facts
from test_multiple_choice import write_questions

QUESTION_MIX_TASKS = ["facts", "quiz", "demo_ner", "demo_sentiment"]


def question_mix(folder: Path, facts_fields: str = "", quiz_fields: str = "") -> str:
    """The `tasks=` override of the mix, its files written to `folder`; `*_fields`: extra entry
    fields of the QA and the multiple-choice task (", layer: 1")."""
    facts, quiz = json.dumps(write_facts(folder)), json.dumps(write_questions(folder, "plain"))
    return (f"tasks=[{{name: facts, type: extractive_qa, format: json, data_files: {facts}{facts_fields}}}, "
            f"{{name: quiz, type: multiple_choice, format: json, choices_column: options, "
            f"label_column: answer, data_files: {quiz}{quiz_fields}}}, demo_ner, demo_sentiment]")
