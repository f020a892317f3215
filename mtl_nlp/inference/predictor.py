"""Predictor: raw texts (and text pairs) in, every task's answer out, one encoder pass per batch.

Inputs are routed by kind (texts to the single-text tasks, pairs to the pair tasks), tokenized in
groups, batched by token count and run through the backend's engine (engines.py); tagging answers
are decoded into entity spans (entities.py)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import AutoTokenizer

from mtl_nlp.common.long_texts import default_stride
from mtl_nlp.common.precision import resolve_mixed_precision
from mtl_nlp.common.tokenizing import encode_texts
from mtl_nlp.inference.choice_answers import choice_answers
from mtl_nlp.inference.engines import build_engine
from mtl_nlp.inference.entities import entities_from_tags, windowed_text_entities
from mtl_nlp.inference.errors import PredictorInputError
from mtl_nlp.inference.inputs import (
    CHOICES,
    KIND_WORDS,
    NO_TASK,
    PAIR,
    QUESTION,
    READS,
    TAKES,
    TEXT,
    ChoiceInput,
    TextInput,
    as_input,
    check_known_tasks,
    input_kind,
    is_blank,
    task_list,
)
from mtl_nlp.inference.question_answers import question_answers
from mtl_nlp.inference.sentence_answers import sentence_answers
from mtl_nlp.modeling.checkpoint_files import consistent_view
from mtl_nlp.modeling.hub_checkpoint import resolve_checkpoint
from mtl_nlp.modeling.model import MultiTaskModel, read_checkpoint_config

QUESTION_KINDS = {"multiple_choice": CHOICES, "extractive_qa": QUESTION}  # the task types of dict inputs
STREAM_CHUNK_BATCHES = 8  # predict_stream holds this many batches of inputs at a time
SORT_GROUP_BATCHES = 64  # inputs tokenized and sorted by token count together, in batches
PREFIX_CHARACTERS_PER_TOKEN = 6  # English averages about 4.5 characters a token: a beginning this long
# (in characters, per token wanted) holds the tokens wanted


class Predictor:
    """Answers every task of a trained checkpoint for raw strings and string pairs.

    Classification tasks give {"label", "score"}; tagging tasks give a list of entities
    {"label", "text", "start", "end", "score"} with character offsets into the input text;
    regression tasks give {"value"}; multilabel tasks give {"labels": the labels whose
    probability reaches the task's threshold, in label order, "scores": {label: probability}}.
    A text that is empty or only whitespace (or a pair with such a text) runs no model: every
    task answers it None, so a list of answers still lines up with its inputs.

    One Predictor may be shared between threads: its calls take turns (a lock around each
    chunk of work), as the tokenizer and the layer hooks of a head reading a lower layer keep
    per-call state on shared objects.

    Which tasks answer which input: a str is answered by the single-text tasks, a
    (text, text_pair) tuple by the sentence-pair tasks, a {"question", "choices": [...],
    "context"?} mapping by the multiple-choice tasks ({"label": the chosen option, "score"}), a
    {"question", "context"} mapping by the extractive QA tasks ({"answer", "score", "start", "end"}).
    Asking (tasks=[...]) for a task with another kind of input is an error. Single texts share one
    encoder pass per batch for all their tasks; pairs, and questions with options, run in their
    own encoder passes. Inputs are batched by token count so padding stays
    small.

    The Predictor takes the model it is given for inference: eval mode, on `device`, and in bf16
    or fp16 (torch engines) with its linear layers' weights stored in that precision.
    """

    def __init__(
        self, model: MultiTaskModel, tokenizer: Any, max_length: int = 512, batch_size: int = 32,
        device: str | torch.device | None = None, mixed_precision: str = "auto",
        stride: int | None = None, backend: str = "torch", checkpoint: str | Path | None = None,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_length = min(max_length, getattr(tokenizer, "model_max_length", max_length))
        self.batch_size = batch_size
        # Tagging tasks read a text longer than max_length as windows sharing `stride` tokens.
        self.stride = default_stride(self.max_length) if stride is None else stride
        if not 0 <= self.stride < self.max_length // 2:
            raise PredictorInputError(
                f"stride must be in [0, max_length // 2 = {self.max_length // 2}), got {self.stride}"
            )
        self.precision = resolve_mixed_precision(mixed_precision, self.device.type == "cpu")
        self.backend = backend
        self._engine = build_engine(self.model, tokenizer, backend, self.device, self.precision, checkpoint)
        # Calls from several threads take turns: a fast tokenizer keeps its truncation settings
        # in shared state, and a forward that stops at a lower layer registers hooks on shared
        # modules for the call; both break when two calls interleave.
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, revision: str | None = None, token: str | None = None, **kwargs: Any
    ) -> Predictor:
        """Load a checkpoint directory written by training (or MultiTaskModel.save_pretrained), or
        a Hub repository id it was pushed to (`revision`: a branch, tag or commit; `token` for
        private repositories). `kwargs` go to the constructor."""
        directory = resolve_checkpoint(directory, revision, token)
        config = read_checkpoint_config(directory)
        with consistent_view(directory) as folder:  # model and tokenizer of one save, checked
            model = MultiTaskModel.load_checked(folder)
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        kwargs.setdefault("checkpoint", directory)  # where an ONNX export is cached
        if "max_length" not in kwargs:  # the training stride goes with the training max_length
            kwargs["max_length"] = config.get("max_length", 512)
            kwargs.setdefault("stride", config.get("stride"))
        return cls(model, tokenizer, **kwargs)

    @property
    def tasks(self) -> list[str]:
        return self.model.task_names

    @property
    def pair_tasks(self) -> list[str]:
        """The tasks that read (text, text_pair) pairs."""
        return [task for task in self.tasks if self.kind_of(task) == PAIR]

    def kind_of(self, task: str) -> str:
        """The kind of input `task` reads: TEXT, PAIR, CHOICES or QUESTION."""
        config = self.model.head_configs[task]
        return QUESTION_KINDS.get(config.type, PAIR if config.text_pair else TEXT)

    def predict(
        self, inputs: TextInput | list[TextInput], tasks: str | list[str] | None = None,
        all_scores: bool = False,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Predictions for one input (a dict) or a list of inputs (a list of dicts, in order).

        An input is a str or a (text, text_pair) tuple; a tuple given alone is one pair (pass a
        list for a batch). Each input is answered by the tasks that take its kind of input (all
        of them, or those of `tasks`: a list of names, or one name; a name given twice is
        answered once). With `all_scores`, a classification answer also holds "scores":
        {label: probability} for every label.
        """
        single = isinstance(inputs, (str, tuple, Mapping, ChoiceInput))  # a mapping: one question
        unordered = (bytes, bytearray, AbstractSet)  # not a sequence of inputs
        if not single and (isinstance(inputs, unordered) or not isinstance(inputs, Iterable)):
            raise PredictorInputError(
                f"input 0 is {type(inputs).__name__}; predict takes a str, a (text, text_pair) "
                'tuple, a {"question", "choices"} mapping, or a list of them'
            )
        results = self._answer([inputs] if single else list(inputs), task_list(tasks), all_scores=all_scores)
        return results[0] if single else results

    def count_windows(
        self, inputs: list[TextInput], tasks: str | list[str] | None = None, limit: int | None = None
    ) -> list[int]:
        """The encoder windows each input costs: one, or for a text that a requested tagging task
        reads as overlapping windows (longer than max_length tokens), one per max_length tokens
        less the stride past its first window. Only texts that may be that long are tokenized
        (every token holds at least one byte of the text). With `limit`, counting stops short once
        the total passes it (the counts are then lower bounds): a text far over it is counted
        from its beginning, not tokenized whole."""
        names = task_list(tasks) or self.tasks
        windowed = any(self.model.head_configs[task].type == "token_classification"
                       and not self.model.head_configs[task].text_pair for task in names)
        span = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        step = span - self.stride
        counts: list[int] = []
        with self._lock:
            for item in inputs:
                over = limit is not None and sum(counts) > limit
                if over or not windowed or not isinstance(item, str) or len(item.encode("utf-8")) <= span:
                    counts.append(1)
                    continue
                # tokens that take the total past the limit: enough to refuse the request
                enough = None if limit is None else span + (limit - sum(counts)) * step + 1
                counts.append(1 + max(0, math.ceil((self._count_tokens(item, enough) - span) / step)))
        return counts

    def _count_tokens(self, text: str, enough: int | None) -> int:
        """The tokens of `text`, or of its beginning when that alone holds `enough` of them (a text
        near a request's byte limit takes the model's thread about 0.6 s to tokenize whole)."""
        def count(part: str) -> int:
            return len(self.tokenizer(part, add_special_tokens=False, verbose=False)["input_ids"])

        cut = None if enough is None else enough * PREFIX_CHARACTERS_PER_TOKEN
        if cut is not None and len(text) > cut:
            cut = text.rfind(" ", 0, cut) if " " in text[cut // 2 : cut] else cut  # not inside a word
            tokens = count(text[:cut])
            if tokens >= enough:
                return tokens
        return count(text)

    def predict_stream(
        self, inputs: Iterable[TextInput], tasks: str | list[str] | None = None,
        chunk_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Predictions for an iterable of any length (a file of millions of lines), yielded in
        input order; at most `chunk_size` inputs (default: 8 batches) are held at a time, and
        each chunk is length-sorted into batches as `predict` does."""
        tasks = task_list(tasks)
        self._check_known(tasks)  # now, not when the first chunk has been read
        return self._stream(iter(inputs), tasks, chunk_size or self.batch_size * STREAM_CHUNK_BATCHES)

    def _stream(
        self, iterator: Iterator[TextInput], tasks: list[str] | None, size: int
    ) -> Iterator[dict[str, Any]]:
        offset = 0
        while chunk := list(islice(iterator, size)):
            yield from self._answer(chunk, tasks, offset)
            offset += len(chunk)

    def check_inputs(self, inputs: list[object], tasks: str | list[str] | None = None) -> list[TextInput]:
        """`inputs` as the Predictor reads them (texts and (text, text_pair) tuples), checked
        against `tasks` without running the model: PredictorInputError or UnknownTaskError with
        the same message `predict` would give."""
        checked = [as_input(index, item) for index, item in enumerate(inputs)]
        self._tasks_by_kind(checked, task_list(tasks))
        return checked

    def _check_known(self, tasks: list[str] | None) -> None:
        check_known_tasks(tasks, self.tasks)

    def _answer(
        self, items: list[object], tasks: list[str] | None, offset: int = 0, all_scores: bool = False
    ) -> list[dict[str, Any]]:
        """Answers for `items` in order; error messages count inputs from `offset`.

        Each kind of input is tokenized in groups of SORT_GROUP_BATCHES batches, one tokenizer call
        a group, and batched by token count: sorting by characters mixes texts whose token counts
        differ widely (numbers and names split into many pieces), and padded tokens cost encoder
        time like real ones."""
        batch = [as_input(offset + i, item) for i, item in enumerate(items)]
        tasks_by_kind = self._tasks_by_kind(batch, tasks, offset)
        results: list[dict[str, Any] | None] = [None] * len(batch)
        group = self.batch_size * SORT_GROUP_BATCHES
        with self._lock:
            for kind, kind_tasks in tasks_by_kind.items():
                of_kind = []
                for i, item in enumerate(batch):
                    if input_kind(item) != kind:
                        continue
                    if is_blank(item):  # no text, no answer: not a confident label for nothing
                        results[i] = dict.fromkeys(kind_tasks)
                    else:
                        of_kind.append(i)
                for start in range(0, len(of_kind), group):  # bounded tokenizer output for long lists
                    indices = of_kind[start : start + group]
                    items = [batch[i] for i in indices]
                    answer = {CHOICES: choice_answers, QUESTION: question_answers}.get(kind)
                    answers = (answer(self, items, kind_tasks) if answer is not None
                               else self._answer_kind(items, kind_tasks, all_scores))
                    for index, result in zip(indices, answers):
                        results[index] = result
        return results

    def _answer_kind(
        self, kind: list[TextInput], tasks: list[str], all_scores: bool = False
    ) -> list[dict[str, Any]]:
        """Answers for inputs of one kind (all texts, or all pairs), in order: one tokenizer call,
        batches of similar token counts."""
        pair = isinstance(kind[0], tuple)
        tagging = any(self.model.head_configs[t].type == "token_classification" for t in tasks)
        encoded = encode_texts(
            self.tokenizer, [item[0] if pair else item for item in kind],
            [item[1] for item in kind] if pair else None, self.max_length, return_offsets_mapping=tagging,
        )
        lengths = [len(ids) for ids in encoded["input_ids"]]
        order = sorted(range(len(kind)), key=lengths.__getitem__)
        results: list[dict[str, Any] | None] = [None] * len(kind)
        for begin in range(0, len(order), self.batch_size):
            rows = order[begin : begin + self.batch_size]
            answers = self._predict_batch([kind[row] for row in rows], encoded, rows, tasks, all_scores)
            for row, result in zip(rows, answers):
                results[row] = result
        return results

    def _tasks_by_kind(
        self, batch: list[TextInput], tasks: list[str] | None, offset: int = 0
    ) -> dict[str, list[str]]:
        """{kind: the tasks answering that kind of input} for the kinds present in `batch`;
        clear errors for unknown tasks and for inputs no requested task can take."""
        explicit = tasks is not None
        tasks = list(tasks) if explicit else self.tasks
        self._check_known(tasks)
        by_kind: dict[str, list[str]] = {}
        for index, item in enumerate(batch, start=offset):
            kind = input_kind(item)
            if kind in by_kind:
                continue
            wrong = [task for task in tasks if self.kind_of(task) != kind]
            if explicit and wrong:
                raise PredictorInputError(f"task {wrong[0]!r} takes {TAKES[self.kind_of(wrong[0])]}; input "
                                          f"{index} is {KIND_WORDS[kind]}")
            answering = [task for task in tasks if self.kind_of(task) == kind]
            if not answering:
                raise PredictorInputError(
                    f"input {index} is {KIND_WORDS[kind]}, but this model has no {NO_TASK[kind]} "
                    f"(tasks: {', '.join(f'{t} ({READS[self.kind_of(t)]})' for t in self.tasks)})"
                )
            by_kind[kind] = answering
        return by_kind

    @torch.no_grad()  # every path's pass (questions and options call this directly): no graph kept
    def _logits(self, inputs: dict[str, Tensor], tasks: list[str]) -> dict[str, Tensor]:
        """{task: logits} of one encoder pass over a batch, from the backend's engine."""
        return self._engine(inputs, tasks)

    @torch.no_grad()
    def _predict_batch(
        self, batch: list[TextInput], encoded: Any, rows: list[int], tasks: list[str],
        all_scores: bool = False,
    ) -> list[dict[str, Any]]:
        """One encoder pass for a batch of inputs of one kind (all texts, or all pairs): rows
        `rows` of their tokenization `encoded`."""
        pair = isinstance(batch[0], tuple)
        texts = [item[0] if pair else item for item in batch]
        tagging = [task for task in tasks if self.model.head_configs[task].type == "token_classification"]
        offsets = [encoded["offset_mapping"][row] for row in rows] if tagging else []
        word_ids = [encoded.word_ids(row) for row in rows] if tagging else []
        inputs = self._padded(encoded, rows)
        logits = self._logits(inputs, tasks)
        # A text that fills max_length may have been cut: its tagging tasks read it as windows.
        long_rows = [row for row, source in enumerate(rows)
                     if len(encoded["input_ids"][source]) >= self.max_length] if tagging else []
        windowed = self._windowed_entities([texts[row] for row in long_rows], tagging)
        long_entities = dict(zip(long_rows, windowed))
        # Every task's answers for the whole batch, read out of tensors once (not per element).
        answers = {}
        for task in tasks:
            config, head, value = self.model.head_configs[task], self.model.heads[task], logits[task]
            if config.type != "token_classification":
                answers[task] = sentence_answers(config, head.scores(value).float(), head.decode(value),
                                                 all_scores)
                continue
            top_scores, top_tags = head.scores(value).float().max(dim=-1)
            scores, tags = top_scores.tolist(), top_tags.tolist()
            answers[task] = [
                long_entities[row][task] if row in long_entities else
                entities_from_tags(text, offsets[row], word_ids[row], scores[row], tags[row], config.labels)
                for row, text in enumerate(texts)
            ]
        return [{task: answers[task][row] for task in tasks} for row in range(len(texts))]

    def _padded(self, encoded: Any, rows: list[int]) -> dict[str, Tensor]:
        """Rows `rows` of a tokenization as model inputs, padded on the right to their longest
        row (where the tagging answers expect each token; lists padded here and made one tensor
        per input, as the tokenizer's own `pad` walks every row in Python)."""
        width = max(len(encoded["input_ids"][row]) for row in rows)
        pad_values = {"input_ids": self.tokenizer.pad_token_id or 0, "attention_mask": 0,
                      "token_type_ids": getattr(self.tokenizer, "pad_token_type_id", 0)}
        inputs = {}
        for key, pad in pad_values.items():
            if key in encoded:
                values = encoded[key]
                padded = [values[row] + [pad] * (width - len(values[row])) for row in rows]
                inputs[key] = torch.tensor(padded, device=self.device)
        return inputs

    def _windowed_entities(self, texts: list[str], tasks: list[str]) -> list[dict[str, list]]:
        """{task: entities} for each of `texts`, read as overlapping windows of max_length tokens
        sharing `stride` tokens; each word is tagged by the window where it has the most context,
        so an entity on a window edge is found once."""
        if not texts:
            return []
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, stride=self.stride,
            return_overflowing_tokens=True, return_offsets_mapping=True, padding=True,
            return_tensors="pt",
        )
        owners = encoded.pop("overflow_to_sample_mapping").tolist()
        offsets = encoded.pop("offset_mapping").tolist()
        word_ids = [encoded.word_ids(window) for window in range(len(owners))]
        probabilities: dict[str, list[Tensor]] = {task: [] for task in tasks}
        for begin in range(0, len(owners), self.batch_size):
            inputs = {key: value[begin : begin + self.batch_size].to(self.device)
                      for key, value in encoded.items()}
            logits = self._logits(inputs, tasks)
            for task in tasks:
                probabilities[task].extend(self.model.heads[task].scores(logits[task]).float().cpu())
        answers = []
        for index, text in enumerate(texts):
            windows = [window for window, owner in enumerate(owners) if owner == index]
            answers.append({
                task: windowed_text_entities(
                    text, [offsets[w] for w in windows], [word_ids[w] for w in windows],
                    [probabilities[task][w] for w in windows], self.model.head_configs[task].labels,
                )
                for task in tasks
            })
        return answers
