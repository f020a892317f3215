"""The teachers' outputs over every training example, computed once and cached on disk.

One `datasets.map` pass runs a task's teachers over its training examples (as loaded, read with
each teacher's own tokenizer and max_length) and writes their logits, in the student's label order,
as the `teacher` column (data/teacher_columns.py) into an Arrow file beside the task's cached
features. The file's name is a digest of the teachers' files (their manifests), the training
examples' fingerprint, the student's tokenizer and labels and this code, so a changed teacher or
data set is a new file, never a stale read; Arrow files are memory-mapped, so a large task's outputs
do not sit in RAM. A JSON file beside it records the teachers and their label names.

A tagging teacher scores each word on its first token, as tagging is scored; its word scores go to
the first token of the same word in the student's tokenization (NaN elsewhere), so a teacher with
another tokenizer teaches the student too. A multiple-choice teacher scores each of an example's
options, read with its own tokenizer as well.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, Features, Sequence, Value, concatenate_datasets
from datasets.fingerprint import Hasher
from transformers import PreTrainedTokenizerBase

from mtl_nlp.common.tokenizing import encode_texts
from mtl_nlp.config import ConfigError
from mtl_nlp.data.choices import CHOICE_MASK, ChoicesCollator, encode_choices
from mtl_nlp.data.features import input_columns, present_examples, reading_spec
from mtl_nlp.data.pipeline import TaskData
from mtl_nlp.data.teacher_columns import TEACHER_COLUMN
from mtl_nlp.distill.teacher_fit import report_fit, teacher_fit
from mtl_nlp.distill.teachers import Teacher, load_teachers, teacher_assignments
from mtl_nlp.modeling.encoder import load_tokenizer
from mtl_nlp.modeling.model import MultiTaskModel

logger = logging.getLogger(__name__)

CODE_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
NAN = float("nan")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # Accelerate's mixed_precision names


def attach_teacher_outputs(
    tasks: dict[str, TaskData], teachers: dict[str, str], tokenizer: PreTrainedTokenizerBase,
    max_length: int, batch_size: int, device: torch.device | str = "cpu", precision: str = "no",
    temperature: float = 1.0,
) -> dict[str, list[Teacher]]:
    """Add the `teacher` column to the training split of every task `teachers` names (see
    teacher_assignments), computing the outputs (under autocast in `precision`, bf16 or fp16, as
    the run trains; "no": float32) or reading them from the cache; returns {task: its teachers}.
    Each teacher's fit to the gold labels at `temperature` is logged (teacher_fit). A streamed
    task is refused: its examples are read once each, in an order no cache can follow."""
    chosen = {}
    for task, sources in teacher_assignments(tasks, teachers).items():
        data = tasks[task]
        if data.source_train is None:
            raise ConfigError(f"distill.teachers: task {task!r} is streamed, and a streamed task's examples "
                              "have no fixed order to cache teacher outputs by; load it in memory "
                              "(streaming: false) to distill it")
        chosen[task] = load_teachers(task, data, sources)
        # Building a teacher draws initial weights from torch's global RNG: the run's own draws
        # (its heads, dropout) stay the same whether the outputs come from the cache or not.
        with torch.random.fork_rng(devices=[]):
            outputs = teacher_outputs(data, chosen[task], tokenizer, max_length, batch_size, device,
                                      precision)
        train = data.splits["train"]
        if len(outputs) != len(train):
            raise RuntimeError(f"task {task}: {len(outputs)} teacher rows for {len(train)} training rows")
        data.splits["train"] = concatenate_datasets([train, outputs], axis=1)
        head_types = {head: data.head_data[head].spec.type
                      for teacher in chosen[task] for head in teacher.heads}
        fit = teacher_fit(data.splits["train"], head_types, bool(data.heads), temperature)
        report_fit(task, fit, temperature)
        _record_fit(outputs, fit, temperature)
    return chosen


def _record_fit(outputs: Dataset, fit: dict[str, dict[str, float]], temperature: float) -> None:
    """Add the teachers' fit to the JSON record beside the cached outputs (none for data in memory)."""
    if not outputs.cache_files:
        return
    record_file = Path(outputs.cache_files[0]["filename"]).with_suffix(".json")
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        record["fit"] = {"temperature": temperature, **fit}
        record_file.write_text(json.dumps(record, indent=2) + "\n")


def teacher_outputs(
    data: TaskData, teachers: list[Teacher], tokenizer: PreTrainedTokenizerBase, max_length: int,
    batch_size: int, device: torch.device | str, precision: str = "no",
) -> Dataset:
    """The `teacher` column of the task's training rows, from the cache when it is there."""
    spec = data.spec
    examples = present_examples(spec, "train", data.source_train)
    key = Hasher.hash({
        "teachers": [teacher.identity() for teacher in teachers],
        "examples": examples._fingerprint, "tokenizer": tokenizer, "max_length": max_length,
        "labels": {head: data.head_data[head].labels for teacher in teachers for head in teacher.heads},
        "precision": precision, "code": CODE_VERSION,
    })
    cache_file = _cache_file(examples, key)
    if cache_file is not None and cache_file.is_file():
        logger.info("task %s: teacher outputs read from %s", spec.name, cache_file)
    else:
        names = ", ".join(f"{teacher.source} ({', '.join(teacher.heads)})" for teacher in teachers)
        logger.info("task %s: computing the teacher outputs of %d training examples with %s",
                    spec.name, len(examples), names)
    teacher_pass = TeacherPass(data, teachers, tokenizer, max_length, batch_size, device, precision)
    outputs = examples.map(
        teacher_pass, batched=True, batch_size=max(256, batch_size), remove_columns=examples.column_names,
        features=Features({TEACHER_COLUMN: teacher_pass.feature()}), new_fingerprint=key,
        cache_file_name=str(cache_file) if cache_file is not None else None,
        desc=f"teacher outputs {spec.name}",
    )
    if cache_file is not None:
        record = {"task": spec.name, "examples": len(examples),
                  "teachers": [{"source": t.source, "labels": t.labels, "max_length": t.max_length}
                               for t in teachers],
                  "student_labels": {head: data.head_data[head].labels for t in teachers for head in t.heads}}
        cache_file.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return outputs


def _cache_file(examples: Dataset, key: str) -> Path | None:
    """Where the outputs are cached: beside the examples' own cache (None for data in memory)."""
    if not examples.cache_files:
        return None
    return Path(examples.cache_files[0]["filename"]).parent / f"teacher-outputs-{key}.arrow"


class TeacherPass:
    """The batched `map` function: a batch of training examples -> their `teacher` values. The
    teachers load on the first batch, so a cache hit loads none."""

    def __init__(self, data: TaskData, teachers: list[Teacher], tokenizer: PreTrainedTokenizerBase,
                 max_length: int, batch_size: int, device: torch.device | str, precision: str = "no") -> None:
        self.data, self.teachers = data, teachers
        self.tokenizer, self.max_length = tokenizer, max_length
        self.batch_size, self.device = batch_size, torch.device(device)
        self.autocast_dtype = AUTOCAST_DTYPES.get(precision)
        self.reader = reading_spec(data.spec)
        self.tagging = self.reader.type == "token_classification"
        self.choices = self.reader.type == "multiple_choice"
        self.loaded: list[tuple[Teacher, MultiTaskModel, PreTrainedTokenizerBase]] | None = None

    def head_type(self, head: str) -> str:
        return self.data.head_data[head].spec.type

    def feature(self) -> Any:
        """The column's type: float32 rows (per token for tagging); {head: ...} for an entry."""
        def one(head: str) -> Sequence:
            row = Sequence(Value("float32"))
            return Sequence(row) if self.head_type(head) == "token_classification" else row
        heads = [head for teacher in self.teachers for head in teacher.heads]
        return {head: one(head) for head in heads} if self.data.heads else one(heads[0])

    def _load(self) -> list[tuple[Teacher, MultiTaskModel, PreTrainedTokenizerBase]]:
        if self.loaded is None:
            self.loaded = []
            for teacher in self.teachers:
                model = MultiTaskModel.from_pretrained(teacher.directory).to(self.device).eval()
                self.loaded.append((teacher, model, load_tokenizer(str(teacher.directory))))
        return self.loaded

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = len(next(iter(batch.values())))
        values: dict[str, list] = {}
        student_words = self._student_word_starts(batch) if self.tagging else None
        for teacher, model, teacher_tokenizer in self._load():
            length = teacher.max_length or self.max_length
            encoded, word_starts = self._encode(batch, teacher_tokenizer, length)
            logits = self._run(model, teacher_tokenizer, encoded, teacher.heads)
            for head in teacher.heads:
                if self.choices:  # an example's options, in its order: no labels to reorder
                    values[head] = [row.tolist() for row in logits[head]]
                    continue
                order = teacher.orders[head] or [0]  # a regression head: its one output
                if self.head_type(head) != "token_classification":
                    values[head] = [row[order].tolist() for row in logits[head]]
                    continue
                values[head] = [_word_rows(row, firsts, order, starts)
                                for row, firsts, starts in zip(logits[head], word_starts, student_words)]
        if self.data.heads:
            return {TEACHER_COLUMN: [{head: outputs[row] for head, outputs in values.items()}
                                     for row in range(rows)]}
        return {TEACHER_COLUMN: next(iter(values.values()))}

    def _encode(self, batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, max_length: int
                ) -> tuple[dict[str, list], list[dict[int, int]] | None]:
        """The batch as the teacher reads it, and for word input each row's first-token positions
        of its words (those the teacher's max_length reaches). A multiple-choice row: its options."""
        if self.choices:
            rows = range(len(next(iter(batch.values()))))
            encoded = encode_choices(batch, list(rows), tokenizer=tokenizer, spec=self.reader,
                                     max_length=max_length, split="train")
            encoded.pop("labels")
            return encoded, None
        columns = input_columns(self.reader)
        if not self.tagging:
            pairs = batch[columns[1]] if len(columns) > 1 else None
            return dict(encode_texts(tokenizer, batch[columns[0]], pairs, max_length)), None
        encoded = tokenizer(batch[columns[0]], is_split_into_words=True, truncation=True,
                            max_length=max_length)
        rows = range(len(encoded["input_ids"]))
        return dict(encoded), [_first_tokens(encoded.word_ids(row)) for row in rows]

    def _student_word_starts(self, batch: dict[str, list]) -> list[list[int | None]]:
        """For each position of the student's training row, the word it starts (None elsewhere)."""
        words = batch[input_columns(self.reader)[0]]
        encoded = self.tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.max_length)
        starts = []
        for row in range(len(words)):
            ids, previous, marks = encoded.word_ids(row), None, []
            for word in ids:
                marks.append(word if word is not None and word != previous else None)
                previous = word
            starts.append(marks)
        return starts

    @torch.no_grad()
    def _run(self, model: MultiTaskModel, tokenizer: PreTrainedTokenizerBase, encoded: dict[str, list],
             heads: list[str]) -> dict[str, list[torch.Tensor]]:
        """{head: each row's logits, unpadded}, in length-sorted batches of batch_size (a
        multiple-choice row: its options' scores)."""
        count = len(encoded["input_ids"])
        order = sorted(range(count), key=lambda row: self._tokens(encoded["input_ids"][row]))
        results: dict[str, list[torch.Tensor | None]] = {head: [None] * count for head in heads}
        for begin in range(0, count, self.batch_size):
            chosen = order[begin : begin + self.batch_size]
            padded = self._pad(tokenizer, [{key: encoded[key][row] for key in encoded} for row in chosen])
            inputs = {key: tensor.to(self.device) for key, tensor in padded.items()}
            with torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                enabled=self.autocast_dtype is not None):
                logits = model.forward_all(inputs["input_ids"], inputs["attention_mask"],
                                           inputs.get("token_type_ids"), tasks=heads,
                                           choice_mask=inputs.get(CHOICE_MASK))
            for head in heads:
                output = logits[head].float().cpu()
                for index, row in enumerate(chosen):
                    value = output[index]
                    if self.choices:
                        value = value[: len(encoded["input_ids"][row])]  # the options it has
                    elif self.head_type(head) == "token_classification":
                        value = _unpad(value, len(encoded["input_ids"][row]), tokenizer.padding_side)
                    elif value.dim() == 0:  # a regression value
                        value = value.reshape(1)
                    results[head][row] = value
        return results

    def _tokens(self, ids: list) -> int:
        """A row's length to sort by: its tokens (a multiple-choice row: its longest option's)."""
        return max(map(len, ids)) if self.choices else len(ids)

    def _pad(self, tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, list]]
             ) -> dict[str, torch.Tensor]:
        """Rows padded as the teacher reads them (multiple choice: [rows, most options, length] and
        the mask of the options each row has)."""
        if not self.choices:
            return tokenizer.pad(rows, return_tensors="pt")
        padded = ChoicesCollator(tokenizer)([{**row, "labels": 0} for row in rows])
        padded.pop("labels")
        return dict(padded)


def _first_tokens(word_ids: list[int | None]) -> dict[int, int]:
    """{word: the position of its first token} (words that got no token, or lie past the
    truncation, are absent)."""
    firsts: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None and word not in firsts:
            firsts[word] = position
    return firsts


def _unpad(row: torch.Tensor, length: int, padding_side: str) -> torch.Tensor:
    return row[row.shape[0] - length :] if padding_side == "left" else row[:length]


def _word_rows(
    logits: torch.Tensor, firsts: dict[int, int], order: list[int], student_starts: list[int | None]
) -> list[list[float]]:
    """Per student position: the teacher's logits (in the student's label order) of the word the
    position starts, NaN elsewhere and for words the teacher did not reach."""
    words = {word: logits[position, order].tolist() for word, position in firsts.items()}
    missing = [NAN] * len(order)
    return [words.get(word, missing) if word is not None else missing for word in student_starts]
