"""What goes into the Predictor: the task names asked for, each input checked (a text or a
(text, text_pair) pair), and `mtl-nlp predict`'s input and output lines."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from mtl_nlp.inference.errors import PredictorInputError, UnknownTaskError

TextInput = str | tuple[str, str]  # a text, or a (text, text_pair) pair for sentence-pair tasks


def task_list(tasks: str | Iterable[str] | None) -> list[str] | None:
    """The requested tasks as a list: one name given as a string is one task (not its letters); a
    name given twice once (answering it again would be the same work for the same answer)."""
    if tasks is None:
        return None
    return [tasks] if isinstance(tasks, str) else list(dict.fromkeys(tasks))


def is_blank(item: TextInput) -> bool:
    """Whether an input has no text to read: empty or only whitespace (for a pair, either text)."""
    texts = item if isinstance(item, tuple) else (item,)
    return any(not text.strip() for text in texts)


def check_known_tasks(tasks: list[str] | None, known: list[str]) -> None:
    """UnknownTaskError naming the requested tasks a checkpoint with tasks `known` lacks."""
    unknown = sorted(set(tasks or []) - set(known))
    if unknown:
        raise UnknownTaskError(f"unknown task(s) {unknown}; this model has: {', '.join(known)}")


def as_input(index: int, item: object) -> TextInput:
    """A str, or a (text, text_pair) pair as a tuple; a 2-item list of str counts as a pair."""
    if isinstance(item, str):
        return checked_text(index, item)
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
        return (checked_text(index, item[0]), checked_text(index, item[1]))
    if isinstance(item, tuple):
        raise PredictorInputError(
            f"input {index} is a tuple of {len(item)} item(s); a tuple input is one "
            "(text, text_pair) pair of two str (pass a list of inputs for a batch)"
        )
    raise PredictorInputError(
        f"input {index} is {type(item).__name__}, expected a str or a (text, text_pair) tuple"
    )


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


def input_from_line(line: str, pairs: bool = True) -> TextInput:
    """One input line of `mtl-nlp predict`: `text<TAB>text_pair` is a pair (split at the first
    TAB, for the sentence-pair tasks), a line without a TAB a single text. With `pairs` False
    (no requested task reads pairs) every line is a single text, TABs included. A blank line
    is kept (an empty text, or with `pairs` an empty pair) so that output line i still answers
    input line i: the Predictor answers it None for every task that reads it."""
    line = line.rstrip("\r\n")
    text, tab, text_pair = line.partition("\t")
    if pairs and not line.strip():  # a blank line: an empty pair, which the pair tasks answer None
        return (text, text_pair)
    return (text, text_pair) if tab and pairs else line


def to_json_line(result: dict[str, Any]) -> str:
    """One prediction as a JSON line (used by `mtl-nlp predict`)."""
    return json.dumps(result, ensure_ascii=False)
