"""The Predictor's answers for questions with a context (extractive QA): the context read in windows
sharing `stride` tokens, as in training, the windows of a batch of questions in encoder passes of
`batch_size` windows (sorted by length, each pass padded to its longest), and each question's best
span over its windows with its character offsets, as transformers' question-answering pipeline
answered."""

from __future__ import annotations

from typing import Any

from mtl_nlp.common.answer_spans import WindowScores, best_answers
from mtl_nlp.common.tokenizing import context_room
from mtl_nlp.inference.errors import PredictorInputError
from mtl_nlp.inference.inputs import QuestionInput

NO_ANSWER = {"answer": "", "score": 0.0, "start": 0, "end": 0}  # a context no window holds a token of


def question_answers(predictor: Any, items: list[QuestionInput], tasks: list[str]) -> list[dict[str, Any]]:
    """{task: {"answer", "score", "start", "end"}} for each question, in order; `predictor` gives
    the tokenizer, max_length, stride, batch size and engine."""
    tokenizer = predictor.tokenizer
    questions = [item.question.lstrip() for item in items]
    _check_room(predictor, questions)
    encoded = tokenizer(questions, [item.context for item in items], truncation="only_second",
                        max_length=predictor.max_length, stride=predictor.stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    owners = encoded.pop("overflow_to_sample_mapping")
    offsets = encoded.pop("offset_mapping")
    lengths = [len(ids) for ids in encoded["input_ids"]]
    # windows sorted by length, so that a batch pads little: a context's last window is short
    order = sorted(range(len(owners)), key=lengths.__getitem__)
    logits: dict[str, list] = {task: [None] * len(owners) for task in tasks}
    for begin in range(0, len(order), predictor.batch_size):
        chosen = order[begin : begin + predictor.batch_size]
        for task, value in predictor._logits(predictor._padded(encoded, chosen), tasks).items():
            for window, row in zip(chosen, value.float().cpu()):
                logits[task][window] = row[: lengths[window]]  # padded on the right
    windows: list[list[int]] = [[] for _ in items]
    for window, owner in enumerate(owners):
        windows[owner].append(window)
    answers = []
    for index, item in enumerate(items):
        answer = {}
        for task in tasks:
            scored = [WindowScores(logits[task][w][:, 0].tolist(), logits[task][w][:, 1].tolist(),
                                   _context_offsets(encoded.sequence_ids(w), offsets[w]))
                      for w in windows[index]]
            found = best_answers(scored, item.context, no_answer=predictor.model.head_configs[task].no_answer)
            answer[task] = found[0].to_dict() if found else dict(NO_ANSWER)
        answers.append(answer)
    return answers


def _context_offsets(sequence_ids: list[int | None], offsets: list[list[int]]) -> list[tuple | None]:
    return [tuple(span) if part == 1 else None for part, span in zip(sequence_ids, offsets)]


def _check_room(predictor: Any, questions: list[str]) -> None:
    """PredictorInputError naming a question that leaves its context no window beyond the stride."""
    for index, room in enumerate(context_room(predictor.tokenizer, questions, predictor.max_length)):
        if room <= predictor.stride:
            raise PredictorInputError(f"question {index} leaves its context {room} of max_length="
                                      f"{predictor.max_length} tokens, no more than the stride "
                                      f"({predictor.stride})")
