"""What the server reads and writes: request bodies checked into the Predictor's inputs, with a
4xx error naming the cause for every user mistake, and answers in the shape of the Hugging Face
inference API (`transformers.pipeline`) for the per-task endpoint."""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """A request the server refuses: HTTP `status`, a short `kind` and a message naming the cause;
    the body is {"error": {"type": kind, "message": message}}."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.kind, "message": self.message}}


@dataclass(frozen=True)
class Limits:
    """Bounds on one request: its body's bytes and its number of inputs."""

    max_request_bytes: int = 1 << 20
    max_inputs: int = 256


def read_json(body: bytes, limits: Limits) -> dict[str, Any]:
    """The request's JSON object; 413 when too large, 400 when not a JSON object."""
    if len(body) > limits.max_request_bytes:
        raise ApiError(413, "request_too_large",
                       f"the request body has {len(body)} bytes; the limit is {limits.max_request_bytes}")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:  # the parser recurses once per level of nesting
        raise ApiError(400, "invalid_json",
                       "the request body nests JSON arrays or objects too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request",
                       f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def predict_request(data: dict[str, Any], limits: Limits) -> tuple[list[Any], list[str] | None]:
    """(inputs, tasks) of a /predict body {"inputs": [text | [text, text_pair], ...], "tasks": [...]}."""
    unknown = sorted(set(data) - {"inputs", "tasks"})
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field(s) {', '.join(unknown)}; a request has "
                       "inputs and, optionally, tasks")
    inputs = data.get("inputs")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(422, "invalid_inputs", "inputs must be a non-empty list of texts or [text, text_pair] "
                       f"pairs, got {json.dumps(inputs)[:80]}")
    _check_count(inputs, limits)
    tasks = data.get("tasks")
    if isinstance(tasks, str):
        tasks = [tasks]
    if tasks is not None and (not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks)):
        raise ApiError(422, "invalid_tasks",
                       f"tasks must be a list of task names, got {json.dumps(tasks)[:80]}")
    return inputs, tasks


def pipeline_request(data: dict[str, Any], limits: Limits,
                     task_type: str = "classification") -> tuple[list[Any], bool, Any]:
    """(inputs, one, top_k) of a per-task body in the inference API's shape: {"inputs": text,
    [texts] or {"text", "text_pair"}, "parameters": {"top_k": k or null}}; `one` when a single
    input came (answered without the outer list); top_k LEGACY when not given."""
    unknown = sorted(set(data) - {"inputs", "parameters"})
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field(s) {', '.join(unknown)}; a request has "
                       "inputs and, optionally, parameters")
    inputs = data.get("inputs")
    one = isinstance(inputs, str | dict)
    items = [inputs] if one else inputs
    if not isinstance(items, list) or not items:
        raise ApiError(422, "invalid_inputs", "inputs must be a text, a list of texts or "
                       f'{{"text": ..., "text_pair": ...}}, got {json.dumps(inputs)[:80]}')
    _check_count(items, limits)
    top_k = _top_k(data.get("parameters") or {}, task_type)
    if task_type in QUESTION_TYPES:  # {"question", "choices" or "context"}: the Predictor checks them
        return items, one, top_k
    return [_pipeline_input(index, item) for index, item in enumerate(items)], one, top_k


QUESTION_TYPES = ("multiple_choice", "extractive_qa")  # inputs: a question with options or a context
LEGACY = "legacy"  # no top_k given: the pipeline's answer of one label per input


def _top_k(parameters: Any, task_type: str) -> Any:
    """The pipeline parameter top_k (an int >= 1, or None for every label); LEGACY when absent."""
    if not isinstance(parameters, dict):
        raise ApiError(422, "invalid_parameters",
                       f"parameters must be an object, got {json.dumps(parameters)[:80]}")
    unknown = sorted(set(parameters) - {"top_k"})
    if unknown:
        raise ApiError(422, "invalid_parameters", f"unknown parameter(s) {', '.join(unknown)}; this "
                       "endpoint takes top_k (for classifiers)")
    if "top_k" not in parameters:
        return LEGACY
    if task_type == "token_classification":
        raise ApiError(422, "invalid_parameters",
                       "top_k applies to text-classification tasks, not to a tagger")
    top_k = parameters["top_k"]
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ApiError(422, "invalid_parameters",
                       f"top_k must be an integer >= 1 or null, got {json.dumps(top_k)}")
    return top_k


def _pipeline_input(index: int, item: Any) -> Any:
    if isinstance(item, dict):
        if set(item) != {"text", "text_pair"}:
            raise ApiError(422, "invalid_inputs", f'input {index}: a pair is {{"text": ..., '
                           f'"text_pair": ...}}, got keys {", ".join(sorted(item))}')
        return [item["text"], item["text_pair"]]
    return item


def _check_count(inputs: list[Any], limits: Limits) -> None:
    if len(inputs) > limits.max_inputs:
        raise ApiError(413, "too_many_inputs",
                       f"the request has {len(inputs)} inputs; the limit is {limits.max_inputs} per request")


def predictor_answers(classifiers: set[str], answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Predictor's answers as /predict gives them: a classification answer without the
    every-label scores the server's model call adds for top_k."""
    return [{task: {key: value for key, value in answer.items() if key != "scores"}
             if task in classifiers and answer is not None else answer for task, answer in result.items()}
            for result in answers]


def pipeline_answers(task_type: str, task: str, tokenizer: Any, inputs: list[Any], one: bool, top_k: Any,
                     answers: list[dict[str, Any]]) -> Any:
    """A request's answers for `task` as `transformers.pipeline` gives them (on the model thread:
    a tagger's words are read back by the tokenizer). A multiple-choice task answers as the
    Predictor does, {"label": the chosen option, "score"}, and an extractive QA task as the
    question-answering pipeline did (transformers 5 has neither): {"answer", "score", "start", "end"}."""
    if task_type in QUESTION_TYPES:
        return answers[0][task] if one else [result[task] for result in answers]
    shaped = [pipeline_answer(task_type, result[task], tokenizer, item if isinstance(item, str) else item[0],
                              top_k) for result, item in zip(answers, inputs)]
    if not one:
        return shaped
    # one input: the pipeline answers a tagger with its entities, a classifier with [answer]
    # (with top_k, with its list of labels)
    return shaped[0] if task_type == "token_classification" or top_k != LEGACY else [shaped[0]]


def pipeline_answer(task_type: str, answer: Any, tokenizer: Any, text: str, top_k: Any = LEGACY) -> Any:
    """One Predictor answer as `transformers.pipeline` gives it for the task's export:
    text-classification [{"label", "score"}]-style dicts, token-classification with aggregation
    [{"entity_group", "score", "word", "start", "end"}], `word` being the entity's tokens as the
    tokenizer writes them back (lower-cased by an uncased tokenizer, as the pipeline does). With
    `top_k` (not LEGACY) a classifier answers its k best labels (None: all), best first."""
    if task_type == "token_classification":
        return [{"entity_group": entity["label"], "score": entity["score"], "word": word,
                 "start": entity["start"], "end": entity["end"]}
                for entity, word in zip(answer, entity_words(tokenizer, text, answer))]
    if task_type == "regression":  # the export read with function_to_apply="none"
        scores = {"value": answer["value"]}
    elif task_type == "multilabel" or "scores" in answer:  # every label's probability
        scores = answer["scores"]
    else:
        scores = {answer["label"]: answer["score"]}
    if top_k == LEGACY:  # the pipeline's top label
        label = max(scores, key=scores.get)
        return {"label": label, "score": scores[label]}
    ranked = sorted(scores.items(), key=lambda pair: pair[1], reverse=True)[:top_k]
    return [{"label": label, "score": score} for label, score in ranked]


def entity_words(tokenizer: Any, text: str, entities: list[dict[str, Any]]) -> list[str]:
    """Each entity's tokens (those over its characters [start, end)) written back by the
    tokenizer. Found by bisection on the tokens' offsets, which only grow: a text of 500 windows
    holds tens of thousands of tokens and of entities, too many to scan the tokens per entity."""
    if not entities:
        return []
    encoding = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    tokens, offsets = encoding.tokens(), encoding["offset_mapping"]
    starts, ends = [first for first, _ in offsets], [last for _, last in offsets]
    words = []
    for entity in entities:
        span = range(bisect_right(ends, entity["start"]), bisect_left(starts, entity["end"]))
        words.append(tokenizer.convert_tokens_to_string(
            [tokens[index] for index in span if starts[index] != ends[index]]))
    return words
