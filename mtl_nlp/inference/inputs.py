"""What goes into the Predictor: the task names asked for, each input checked (a text, a
(text, text_pair) pair, or a question with its options), and `mtl-nlp predict`'s input and output
lines."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mtl_nlp.inference.errors import PredictorInputError, UnknownTaskError


@dataclass(frozen=True)
class ChoiceInput:
    """A question with its options (and an optional context read before it), for the
    multiple-choice tasks; given as {"question", "choices": [...], "context"?}."""

    question: str
    choices: tuple[str, ...]
    context: str | None = None


@dataclass(frozen=True)
class QuestionInput:
    """A question and the context its answer is a span of, for the extractive QA tasks; given as
    {"question", "context"}."""

    question: str
    context: str


# a text, a (text, text_pair) pair for sentence-pair tasks, a question with its options or with
# its context
TextInput = str | tuple[str, str] | ChoiceInput | QuestionInput
TEXT, PAIR, CHOICES, QUESTION = "text", "pair", "choices", "question"  # each kind has its own tasks
KIND_WORDS = {TEXT: "a single text", PAIR: "a (text, text_pair) pair",
              CHOICES: "a question with its options", QUESTION: "a question with its context"}
# what each kind's tasks take, read (shorter), and what a model lacks when none takes it
TAKES = {TEXT: "single texts", PAIR: "(text, text_pair) pairs", CHOICES: "questions with options",
         QUESTION: "questions with a context"}
READS = {TEXT: "texts", PAIR: "pairs", CHOICES: "questions with options",
         QUESTION: "questions with a context"}
NO_TASK = {TEXT: "single-text task", PAIR: "sentence-pair task", CHOICES: "multiple-choice task",
           QUESTION: "extractive QA task"}


def input_kind(item: TextInput) -> str:
    """TEXT, PAIR, CHOICES or QUESTION."""
    if isinstance(item, ChoiceInput | QuestionInput):
        return CHOICES if isinstance(item, ChoiceInput) else QUESTION
    return PAIR if isinstance(item, tuple) else TEXT


def task_list(tasks: str | Iterable[str] | None) -> list[str] | None:
    """The requested tasks as a list: one name given as a string is one task (not its letters); a
    name given twice once (answering it again would be the same work for the same answer)."""
    if tasks is None:
        return None
    return [tasks] if isinstance(tasks, str) else list(dict.fromkeys(tasks))


def is_blank(item: TextInput) -> bool:
    """Whether an input has no text to read: empty or only whitespace (for a pair, either text; for
    a question with options, the question)."""
    if isinstance(item, ChoiceInput):
        return not item.question.strip()
    if isinstance(item, QuestionInput):
        return not item.question.strip() or not item.context.strip()
    texts = item if isinstance(item, tuple) else (item,)
    return any(not text.strip() for text in texts)


def check_known_tasks(tasks: list[str] | None, known: list[str]) -> None:
    """UnknownTaskError naming the requested tasks a checkpoint with tasks `known` lacks."""
    unknown = sorted(set(tasks or []) - set(known))
    if unknown:
        raise UnknownTaskError(f"unknown task(s) {unknown}; this model has: {', '.join(known)}")


def as_input(index: int, item: object) -> TextInput:
    """A str, a (text, text_pair) pair as a tuple (a 2-item list of str counts as a pair), or a
    question with its options from a {"question", "choices", "context"?} mapping."""
    if isinstance(item, str):
        return checked_text(index, item)
    if isinstance(item, ChoiceInput | QuestionInput):
        return item
    if isinstance(item, Mapping):
        return choice_input(index, item) if "choices" in item else question_input(index, item)
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
        return (checked_text(index, item[0]), checked_text(index, item[1]))
    if isinstance(item, tuple):
        raise PredictorInputError(
            f"input {index} is a tuple of {len(item)} item(s); a tuple input is one "
            "(text, text_pair) pair of two str (pass a list of inputs for a batch)"
        )
    raise PredictorInputError(
        f"input {index} is {type(item).__name__}, expected a str, a (text, text_pair) tuple or a "
        '{"question": ..., "choices": [...]} mapping'
    )


def question_input(index: int, item: Mapping) -> QuestionInput:
    """A question with its context from a {"question", "context"} mapping."""
    if set(item) != {"question", "context"}:
        raise PredictorInputError(f"input {index} is a mapping of the keys {sorted(item)}; a question is "
                                  '{"question": str, "context": str} (extractive QA) or {"question": str, '
                                  '"choices": [str, ...]} (multiple choice)')
    if not isinstance(item["question"], str) or not isinstance(item["context"], str):
        raise PredictorInputError(f"input {index}: the question and the context must be str")
    return QuestionInput(checked_text(index, item["question"]), checked_text(index, item["context"]))


def choice_input(index: int, item: Mapping) -> ChoiceInput:
    """A question with its options from a mapping, each part checked."""
    unknown = sorted(set(item) - {"question", "choices", "context"})
    if unknown or "question" not in item or "choices" not in item:
        raise PredictorInputError(f"input {index} is a mapping of the keys {sorted(item)}; a question with "
                                  'options is {"question": str, "choices": [str, ...], "context": str '
                                  "(optional)}")
    question, choices, context = item["question"], item["choices"], item.get("context")
    if not isinstance(question, str) or (context is not None and not isinstance(context, str)):
        raise PredictorInputError(f"input {index}: the question and the context must be str")
    if (isinstance(choices, str) or not isinstance(choices, list | tuple) or not choices
            or not all(isinstance(choice, str) and choice.strip() for choice in choices)):
        raise PredictorInputError(f"input {index}: choices must be a non-empty list of non-empty str, got "
                                  f"{choices!r}")
    return ChoiceInput(checked_text(index, question), tuple(checked_text(index, c) for c in choices),
                       None if context is None else checked_text(index, context))


def checked_text(index: int, text: str) -> str:
    """`text`, unless it holds a lone surrogate (from `json.loads('"\\ud800"')` or a file read with
    errors="surrogateescape"), which no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise PredictorInputError(
            f"input {index} is not valid unicode: a lone surrogate {text[error.start]!r} at character "
            f"{error.start}"
        ) from None
    return text


def input_from_line(line: str, pairs: bool = True, questions: bool = False) -> TextInput | dict:
    """One input line of `mtl-nlp predict`: `text<TAB>text_pair` is a pair (split at the first
    TAB, for the sentence-pair tasks), a line without a TAB a single text. With `pairs` False
    (no requested task reads pairs) every line is a single text, TABs included. A blank line
    is kept (an empty text, or with `pairs` an empty pair) so that output line i still answers
    input line i: the Predictor answers it None for every task that reads it. With `questions` (a
    requested task is multiple choice or extractive QA), a line that starts with `{` is a JSON
    question, {"question", "choices": [...], "context"?} or {"question", "context"}."""
    line = line.rstrip("\r\n")
    if questions and line.lstrip().startswith("{"):  # a question, as JSON
        try:
            return json.loads(line)
        except json.JSONDecodeError as error:
            raise PredictorInputError(f"a line starting with {{ is read as a question, and is not valid "
                                      f"JSON: {error}") from None
    text, tab, text_pair = line.partition("\t")
    if pairs and not line.strip():  # a blank line: an empty pair, which the pair tasks answer None
        return (text, text_pair)
    return (text, text_pair) if tab and pairs else line


def to_json_line(result: dict[str, Any]) -> str:
    """One prediction as a JSON line (used by `mtl-nlp predict`)."""
    return json.dumps(result, ensure_ascii=False)
