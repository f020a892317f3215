"""A task entry: TaskSpec, the checks that make a malformed entry fail with a message naming the
key and the fix, and the reading of a YAML `tasks:` mapping (an entry of one head or of several)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_nlp.common.errors import MtlNlpError
from mtl_nlp.common.task_types import POOLINGS, SENTENCE_TYPES, TASK_METRICS, TASK_TYPES

# tsv: tab-separated, quote characters are plain text (SST-2); tsv_quoted: tab-separated with
# CSV-style quoting, a field holding `"` is wrapped in quotes with inner quotes doubled (STS-B).
FORMATS = ("conll", "csv", "tsv", "tsv_quoted", "json")
TEXT_TABLE_FORMATS = ("csv", "tsv", "tsv_quoted")  # one plain-text cell per column
# The type of an entry that lists several heads over one dataset (joint NLU: intent + slots). The
# config gives no type for it; each head has its own.
MULTI_HEAD = "multi_head"
# The keys a head of such an entry takes; the entry itself takes the data keys (HEAD_ONLY_KEYS and
# `type` are the heads').
HEAD_KEYS = ("name", "type", "text_column", "text_pair_column", "label_column", "tokens_column",
             "tags_column", "labels", "pooling", "threshold", "label_separator", "layer", "loss_weight",
             "metric", "layer_mix")
# what an entry with heads takes besides its data keys (layer_mix: a default for its heads)
HEAD_ONLY_KEYS = tuple(key for key in HEAD_KEYS if key not in ("name", "loss_weight", "layer_mix"))


class TaskError(MtlNlpError, ValueError):
    """A task entry that is malformed, unknown or registered twice."""


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to load, train, evaluate and predict one task.

    Data comes from the Hugging Face Hub (`dataset`) or from local files (`data_files` with
    `format`). `local_files`/`local_format` describe the task's layout under a `data_dir`, which
    takes precedence when a run sets one (the built-in tasks use this to read offline copies).
    """

    name: str
    # classification | token_classification | regression | multilabel | multiple_choice | extractive_qa
    type: str
    dataset: str | None = None  # Hub id, e.g. "fancyzhx/ag_news"
    dataset_config: str | None = None  # Hub configuration name, if the dataset has several
    data_files: Mapping[str, str] | None = None  # {split: path}; relative paths use data_dir
    format: str | None = None  # conll | csv | tsv | tsv_quoted | json (for data_files)
    local_files: Mapping[str, str] | None = None  # {split: path under data_dir}
    local_format: str | None = None  # format of local_files
    splits: Mapping[str, str] | None = None  # {train|validation|test: source split name}
    text_column: str = "text"  # classification / regression / multilabel input
    text_pair_column: str | None = None  # second text of sentence-pair tasks (NLI, similarity)
    label_column: str = "label"  # classification / regression / multilabel target
    tokens_column: str = "tokens"  # token classification input (pre-split words)
    tags_column: str = "tags"  # token classification target (one tag per word)
    # multiple choice: the question, its options (a list of texts, or the Hub's {"label": [...],
    # "text": [...]}) and an optional context read before the question; the label column holds the
    # answer's index, its option label (the Hub's answerKey "A".."E") or its text
    question_column: str = "question"
    choices_column: str = "choices"
    context_column: str | None = None  # extractive_qa: the text its answers are spans of (default context)
    # extractive_qa: the gold answers, the Hub's squad schema {"text": [...], "answer_start": [...]}
    # (character offsets into the context); an empty list: a question the context does not answer
    answers_column: str = "answers"
    # extractive_qa: questions may have no answer in their context (SQuAD 2.0): the empty answer
    # is given when its score (the first token's) beats every span's
    no_answer: bool = False
    labels: tuple[str, ...] | None = None  # label set; else ClassLabel names or sorted train labels
    loss_weight: float = 1.0  # multiplies this task's loss
    metric: str | None = None  # main metric (one of TASK_METRICS[type]); None: the type's default
    # sentence heads: one of POOLINGS; `pooler` (the default) exports to transformers' classifiers
    # and scored as well as `mean` (BENCHMARKS.md)
    pooling: str = "pooler"
    threshold: float = 0.5  # multilabel: a label is predicted when its probability reaches this
    label_separator: str = ","  # multilabel: separates the labels of a text-valued label cell
    layer: int | None = None  # the head reads this encoder layer's hidden states (None: the last)
    # the head reads a learned mix of every encoder layer's states (ELMo's scalar mix), at no extra pass
    layer_mix: bool = False
    max_train_examples: int | None = None  # train on a seeded random subset of this many examples
    # read the training file as a stream (data larger than memory): local json/csv/tsv/conll files,
    # with a validation file; `size` (training examples) spares the counting pass over the file
    streaming: bool = False
    size: int | None = None
    description: str = ""  # one line shown by `mtl-nlp tasks`
    # an entry of type MULTI_HEAD: its heads, each a spec of its own with the entry's data keys;
    # one batch of the entry trains all of them (see from_dict)
    heads: tuple[TaskSpec, ...] | None = None

    @property
    def source(self) -> str:
        """Where the task's data comes from, for model cards: the Hub id, or "local files: ..."."""
        if self.dataset is not None:
            return self.dataset + (f" ({self.dataset_config})" if self.dataset_config else "")
        files = list((self.data_files or self.local_files or {}).values())
        folder = Path(files[0]).parent.name
        return f"local files: {folder}/ ({', '.join(Path(path).name for path in files)})"

    @property
    def main_metric(self) -> str:
        """The metric that selects checkpoints and enters the overall score."""
        if self.heads is not None:
            raise TaskError(f"task {self.name!r} has several heads, each with its own main metric: "
                            f"{', '.join(head.name for head in self.heads)}")
        return self.metric or TASK_METRICS[self.type][0]

    @property
    def head_specs(self) -> tuple[TaskSpec, ...]:
        """The heads this entry trains: its `heads`, or the entry itself (one head)."""
        return self.heads if self.heads is not None else (self,)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise TaskError(f"task name must be a non-empty string, got {self.name!r}")
        self._check_value_types()
        if self.type == MULTI_HEAD or self.heads is not None:
            self._check_heads()
        elif self.type not in TASK_TYPES:
            raise TaskError(
                f"task {self.name!r}: type {self.type!r} is not one of: {', '.join(TASK_TYPES)}"
            )
        if self.dataset is None and self.data_files is None and self.local_files is None:
            raise TaskError(f"task {self.name!r}: give `dataset` (a Hub id) or `data_files`")
        for key in ("format", "local_format"):
            value = getattr(self, key)
            if value is not None and value not in FORMATS:
                raise TaskError(
                    f"task {self.name!r}: {key} {value!r} is not one of: {', '.join(FORMATS)}"
                )
        if self.data_files is not None and self.format is None:
            raise TaskError(f"task {self.name!r}: data_files needs a format ({', '.join(FORMATS)})")
        if self.type in ("multiple_choice", "extractive_qa"):
            self._check_questions()
        if self.no_answer and self.type != "extractive_qa":
            raise TaskError(f"task {self.name!r}: no_answer is for extractive_qa tasks, not {self.type}")
        if self.type == "token_classification" and {self.format, self.local_format} & set(TEXT_TABLE_FORMATS):
            raise TaskError(
                f"task {self.name!r}: token_classification reads lists of words and tags; use format "
                "conll or json (csv/tsv cells hold plain text)"
            )
        if self.metric is not None and self.metric not in TASK_METRICS.get(self.type, ()):
            raise TaskError(
                f"task {self.name!r}: metric {self.metric!r} is not one of the {self.type} metrics: "
                f"{', '.join(TASK_METRICS.get(self.type, ()))}"
            )
        if self.pooling not in POOLINGS:
            raise TaskError(
                f"task {self.name!r}: pooling {self.pooling!r} is not one of: {', '.join(POOLINGS)}"
            )
        if self.text_pair_column is not None and self.type not in SENTENCE_TYPES:
            raise TaskError(
                f"task {self.name!r}: text_pair_column needs a sentence-level type "
                f"({', '.join(SENTENCE_TYPES)}), not {self.type}"
            )
        weight = self.loss_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise TaskError(f"task {self.name!r}: loss_weight must be a positive number, got {weight!r}")
        if not 0 < self.threshold < 1:
            raise TaskError(f"task {self.name!r}: threshold must be between 0 and 1, got {self.threshold}")
        if self.layer is not None and (not isinstance(self.layer, int) or self.layer < 1):
            raise TaskError(
                f"task {self.name!r}: layer must be an encoder layer number from 1, got {self.layer!r}"
            )
        if self.layer is not None and self.layer_mix:
            raise TaskError(f"task {self.name!r}: a head reads one `layer` or a `layer_mix` of them all, "
                            "not both")
        if self.max_train_examples is not None and self.max_train_examples < 1:
            raise TaskError(
                f"task {self.name!r}: max_train_examples must be positive, got {self.max_train_examples}"
            )
        self._check_streaming()
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
            if len(set(self.labels)) != len(self.labels):
                raise TaskError(f"task {self.name!r}: labels contain duplicates: {self.labels}")

    def _check_value_types(self) -> None:
        """TaskError naming the key, the value and the expected kind for a value of the wrong
        type (a YAML entry is not type-checked by YAML: `5e-1` is a string, `labels: pos` is not
        a list), before any check reads the value."""
        for key in TEXT_KEYS:
            value = getattr(self, key)
            if value is None and key in REQUIRED_TEXT_KEYS:
                raise TaskError(f"task {self.name!r}: {key} must be text (a column name or a choice), got "
                                f"null; leave it out for its default {_default(key)!r}")
            if value is not None and not isinstance(value, str):
                raise TaskError(f"task {self.name!r}: {key} must be text, got {value!r}")
        for key in MAPPING_KEYS:
            value = getattr(self, key)
            if value is not None and not (isinstance(value, Mapping)
                                          and all(isinstance(v, str) for v in value.values())):
                raise TaskError(f"task {self.name!r}: {key} must map split names to {MAPPING_KEYS[key]}, "
                                f"e.g. {{train: train.csv, test: test.csv}}; got {value!r}")
        for key in NUMBER_KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                number = _as_number(value)
                hint = f" (YAML reads {value} as text; write {number})" if number is not None else ""
                raise TaskError(f"task {self.name!r}: {key} must be a number, got {value!r}{hint}")
        for key in WHOLE_NUMBER_KEYS:
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TaskError(f"task {self.name!r}: {key} must be a whole number, got {value!r}")
        for key in ("streaming", "layer_mix", "no_answer"):
            value = getattr(self, key)
            if not isinstance(value, bool):
                raise TaskError(f"task {self.name!r}: {key} must be true or false, got {value!r}")
        labels = self.labels
        if labels is not None and (isinstance(labels, str | Mapping) or not isinstance(labels, list | tuple)
                                   or not all(isinstance(label, str | int) and not isinstance(label, bool)
                                              for label in labels)):
            raise TaskError(f"task {self.name!r}: labels must be a list of label names, e.g. [negative, "
                            f"positive]; got {labels!r}")

    def _check_heads(self) -> None:
        """An entry of several heads: heads of the known types, named apart, reading one input."""
        if self.type != MULTI_HEAD:
            raise TaskError(f"task {self.name!r}: an entry with heads has no type of its own; give each "
                            f"head its type ({', '.join(TASK_TYPES)})")
        heads = self.heads or ()
        if not heads or not all(isinstance(head, TaskSpec) and head.heads is None for head in heads):
            raise TaskError(f"task {self.name!r}: heads must be a non-empty list of head entries")
        names = [head.name for head in self.heads]
        repeated = sorted({name for name in names if names.count(name) > 1} | {self.name} & set(names))
        if repeated:
            raise TaskError(f"task {self.name!r}: head name(s) {', '.join(repeated)} used twice; each "
                            "head needs a name of its own, other than the entry's")
        if self.streaming:
            raise TaskError(f"task {self.name!r}: an entry with several heads cannot stream its data yet; "
                            "remove streaming")
        questions = [head.name for head in self.heads if head.type in ("multiple_choice", "extractive_qa")]
        if questions:
            raise TaskError(f"task {self.name!r}: head(s) {', '.join(questions)} read a question (with its "
                            "options or its context), which the other heads of an entry cannot read; give "
                            "each multiple_choice or extractive_qa task an entry of its own")
        tagging = [head for head in self.heads if head.type == "token_classification"]
        sentence = [head for head in self.heads if head.type != "token_classification"]
        if tagging:
            _check_same_input(self.name, tagging, lambda head: head.tokens_column, "tokens column")
            pairs = [head.name for head in sentence if head.text_pair_column]
            if pairs:
                raise TaskError(
                    f"task {self.name!r}: head(s) {', '.join(pairs)} read text pairs, but an entry with a "
                    f"token_classification head reads its words ({tagging[0].tokens_column!r}) for every "
                    "head; put pair heads in an entry of their own")
        else:
            _check_same_input(self.name, sentence, lambda head: (head.text_column, head.text_pair_column),
                              "text column (and text pair column)")

    def _check_questions(self) -> None:
        """Multiple choice and extractive QA read lists (options, answers) from JSON or the Hub, in an
        entry of their own; extractive QA reads `context` unless told another column."""
        what = "a list of options" if self.type == "multiple_choice" else "a list of answers"
        if {self.format, self.local_format} & {*TEXT_TABLE_FORMATS, "conll"}:
            raise TaskError(f"task {self.name!r}: {self.type} reads {what} per question; use format json "
                            "(csv/tsv cells hold plain text) or a Hub dataset")
        if self.streaming:
            raise TaskError(f"task {self.name!r}: a {self.type} task cannot stream its data yet; remove "
                            "streaming")
        if self.type == "extractive_qa" and self.context_column is None:
            object.__setattr__(self, "context_column", "context")

    def _check_streaming(self) -> None:
        size = self.size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise TaskError(f"task {self.name!r}: size must be a positive number of examples, got {size!r}")
        if not self.streaming:
            if self.size is not None:
                raise TaskError(f"task {self.name!r}: size is for streamed tasks; set streaming: true")
            return
        if self.data_files is None and self.local_files is None:
            raise TaskError(f"task {self.name!r}: streaming reads local files; give data_files "
                            "(a Hub dataset is downloaded and memory-mapped, not streamed)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        """Build a spec from a mapping (a YAML `tasks:` entry); unknown keys are an error. An
        entry with `heads` (a list of head mappings, HEAD_KEYS) describes its data once and trains
        every head on each of its batches."""
        if "heads" in data:
            return _entry_from_dict(data)
        _check_keys(data)
        missing = [key for key in ("name", "type") if key not in data]
        if missing:
            raise TaskError(f"task entry {dict(data)!r} is missing {', '.join(missing)}")
        return cls(**data)

    def with_changes(self, changes: Mapping[str, Any]) -> TaskSpec:
        """This entry with some fields changed (e.g. `{name: conll2003, layer: 3}` in a config);
        an entry's heads take its data changes too."""
        fields = {k: v for k, v in changes.items() if k != "name"}
        if self.heads is None:
            _check_keys({"name": self.name, **changes})
            return dataclasses.replace(self, **fields)
        _check_keys({"name": self.name, **changes}, ENTRY_KEYS - {"heads"}, "an entry with heads")
        data = {k: v for k, v in fields.items() if k not in ("loss_weight", "description")}
        heads = tuple(dataclasses.replace(head, **data) for head in self.heads)
        return dataclasses.replace(self, **fields, heads=heads)


def _default(key: str) -> object:
    """The default value of TaskSpec field `key`."""
    return next(field.default for field in dataclasses.fields(TaskSpec) if field.name == key)


TASK_KEYS = frozenset(f.name for f in dataclasses.fields(TaskSpec)) - {"heads"}
# The value kind of each key, checked before anything reads the values (see _check_value_types).
TEXT_KEYS = ("type", "dataset", "dataset_config", "format", "local_format", "text_column", "text_pair_column",
             "label_column", "tokens_column", "tags_column", "question_column", "choices_column",
             "context_column", "answers_column", "metric", "pooling", "label_separator", "description")
# The text keys with a default: null (YAML's `key:` with no value) is not a value for them.
REQUIRED_TEXT_KEYS = tuple(key for key in TEXT_KEYS if isinstance(_default(key), str))
MAPPING_KEYS = {"data_files": "file paths", "local_files": "file paths", "splits": "source split names"}
NUMBER_KEYS = ("threshold",)  # loss_weight has its own check: a positive number
WHOLE_NUMBER_KEYS = ("layer", "max_train_examples", "size")
ENTRY_KEYS = TASK_KEYS - set(HEAD_ONLY_KEYS) | {"heads"}  # the keys of an entry with heads


def _as_number(value: object) -> float | None:
    """The number a YAML string such as "5e-1" spells (YAML 1.1 wants a dot in it), else None."""
    if not isinstance(value, str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _check_keys(data: Mapping[str, Any], valid: frozenset[str] = TASK_KEYS, what: str = "") -> None:
    unknown = sorted(set(data) - valid)
    if unknown:
        name = data.get("name", "<unnamed>")
        of = f" of {what}" if what else ""
        raise TaskError(
            f"task {name!r}: unknown key(s) {', '.join(unknown)}; valid keys{of}: {', '.join(sorted(valid))}"
        )


def _check_same_input(
    entry: str, heads: list[TaskSpec], read: Callable[[TaskSpec], object], what: str
) -> None:
    """TaskError when the heads of `entry` read different input columns: one batch has one input."""
    inputs = {head.name: read(head) for head in heads}
    if len(set(inputs.values())) > 1:
        shown = ", ".join(f"{name}: {value!r}" for name, value in inputs.items())
        raise TaskError(f"task {entry!r}: its heads read different inputs ({what}: {shown}); the heads "
                        "of one entry read one input, so give them the same column(s)")


def _entry_from_dict(data: Mapping[str, Any]) -> TaskSpec:
    """An entry with heads: each head is a spec with the entry's data keys and its own head keys;
    the entry records the input columns its heads read (for loading)."""
    name = data.get("name", "<unnamed>")
    if "type" in data:
        raise TaskError(f"task {name!r}: an entry with heads has no type of its own; give each head "
                        f"its type ({', '.join(TASK_TYPES)})")
    _check_keys(data, ENTRY_KEYS, "an entry with heads (head keys go under heads)")
    if "name" not in data:
        raise TaskError(f"task entry {dict(data)!r} is missing name")
    heads = data["heads"]
    if isinstance(heads, str | Mapping) or not isinstance(heads, list | tuple) or not heads:
        raise TaskError(f"task {name!r}: heads must be a non-empty list of head entries, got {heads!r}")
    shared = {k: v for k, v in data.items() if k not in ("name", "heads", "loss_weight", "description")}
    # a head's own value wins over the entry's (layer_mix: the entry's is every head's default)
    specs = []
    for head in heads:
        if not isinstance(head, Mapping):
            raise TaskError(f"task {name!r}: a head must be a mapping of head keys, got {head!r}")
        head_name = head.get("name", "<unnamed>")
        unknown = sorted(set(head) - set(HEAD_KEYS))
        if unknown:
            raise TaskError(f"task {name!r}, head {head_name!r}: unknown key(s) {', '.join(unknown)}; a head "
                            f"takes: {', '.join(sorted(HEAD_KEYS))} (data keys belong to the entry)")
        missing = [key for key in ("name", "type") if key not in head]
        if missing:
            raise TaskError(f"task {name!r}: head {head_name!r} is missing {', '.join(missing)}")
        specs.append(TaskSpec(**{**shared, **head}))
    tagging = [spec for spec in specs if spec.type == "token_classification"]
    reader = tagging[0] if tagging else specs[0]
    inputs = {key: getattr(reader, key) for key in
              ("text_column", "text_pair_column", "tokens_column", "tags_column")}
    entry = {k: v for k, v in data.items() if k != "heads"}
    return TaskSpec(**entry, **inputs, type=MULTI_HEAD, heads=tuple(specs))
