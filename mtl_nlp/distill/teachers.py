"""Which teacher teaches which head, and the checks that make its outputs mean the student's labels.

`distill.teachers` maps a task (an entry of several heads: each of its heads) or one head to a
checkpoint that has it: a single-task run, a `finetune` output, a multi-task checkpoint or a Hub id,
of any encoder family or size. A teacher's head must be of the head's type and know exactly the
task's labels, in any order: its outputs are reordered to the student's label order by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl_nlp.common.task_types import UNTAUGHT_TYPES
from mtl_nlp.config import ConfigError
from mtl_nlp.data.pipeline import TaskData
from mtl_nlp.modeling.checkpoint_files import MANIFEST
from mtl_nlp.modeling.encoder import ModelLoadError
from mtl_nlp.modeling.hub_checkpoint import resolve_checkpoint
from mtl_nlp.modeling.model import read_checkpoint_config


@dataclass
class Teacher:
    """One teacher checkpoint and the heads of one task it teaches."""

    source: str  # as the config names it (a folder or a Hub id)
    directory: Path  # where it lives on disk
    saved: dict[str, Any]  # its mtl_nlp.json
    heads: list[str] = field(default_factory=list)
    # {head: for each of the student's labels, the teacher's output index}; empty for regression
    orders: dict[str, list[int]] = field(default_factory=dict)

    @property
    def max_length(self) -> int | None:
        """The max_length the teacher was trained with (None when its checkpoint does not say)."""
        return self.saved.get("max_length")

    @property
    def labels(self) -> dict[str, list[str]]:
        """{head: the teacher's label names, in its own order}, for the heads it teaches."""
        return {task["name"]: task["labels"] for task in self.saved["tasks"] if task["name"] in self.heads}

    def identity(self) -> dict[str, Any]:
        """What decides the teacher's outputs: its files (the manifest's sizes and SHA-256s)."""
        return {"heads": self.heads, "files": self.saved.get(MANIFEST)}


def teacher_assignments(tasks: dict[str, TaskData], teachers: dict[str, str]) -> dict[str, dict[str, str]]:
    """{task: {head: teacher source}} from `distill.teachers`, whose keys are tasks (an entry's
    name: every head of it) or heads (one head of an entry); a head named itself wins over its
    entry. An unknown key is a ConfigError naming the tasks and heads there are."""
    heads_of = {name: list(data.head_data) for name, data in tasks.items()}
    entry_of = {head: name for name, heads in heads_of.items() for head in heads}
    unknown = [key for key in teachers if key not in heads_of and key not in entry_of]
    if unknown:
        known = sorted({*heads_of, *entry_of})
        raise ConfigError(f"distill.teachers: {', '.join(unknown)} is not a task of this run; its tasks and "
                          f"heads are: {', '.join(known)}")
    questions = [key for key in teachers if key in tasks and tasks[key].spec.type in UNTAUGHT_TYPES]
    if questions:
        raise ConfigError(f"distill.teachers: {', '.join(questions)} is an extractive_qa task, which trains "
                          "on windows of its contexts cut by the student's tokenizer, and a teacher's span "
                          "scores do not line up with them; teachers teach the other task types")
    assigned: dict[str, dict[str, str]] = {}
    for name, heads in heads_of.items():
        for head in heads:
            source = teachers.get(head, teachers.get(name))
            if source is not None:
                assigned.setdefault(name, {})[head] = source
    return assigned


def load_teachers(task: str, data: TaskData, sources: dict[str, str]) -> list[Teacher]:
    """The teachers of `task`'s heads (`sources`: {head: teacher source}), one per checkpoint, each
    checked to have the heads it teaches with the same type and labels."""
    teachers: dict[str, Teacher] = {}
    for head, source in sources.items():
        if source not in teachers:
            try:
                directory = resolve_checkpoint(source)
                teachers[source] = Teacher(source, directory, read_checkpoint_config(directory))
            except ModelLoadError as exc:
                raise ConfigError(f"distill.teachers.{head}: {exc}") from exc
        teacher = teachers[source]
        teacher.heads.append(head)
        teacher.orders[head] = _label_order(task, head, data.head_data[head], teacher)
    return list(teachers.values())


def _label_order(task: str, head: str, data: TaskData, teacher: Teacher) -> list[int]:
    """For each of the head's labels, the index of the teacher's output of that label."""
    saved = {entry["name"]: entry for entry in teacher.saved["tasks"]}
    where = f"distill.teachers: task {head!r}" + (f" (of {task!r})" if head != task else "")
    if head not in saved:
        raise ConfigError(f"{where}: teacher {teacher.source} has no task {head!r}; its tasks are: "
                          f"{', '.join(saved)}")
    kind, labels = saved[head]["type"], saved[head].get("labels", [])
    if kind != data.spec.type:
        raise ConfigError(f"{where}: teacher {teacher.source} has a {kind} head, the task is "
                          f"{data.spec.type}")
    if sorted(labels) != sorted(data.labels):
        raise ConfigError(f"{where}: teacher {teacher.source} has labels [{', '.join(labels)}], the task's "
                          f"data has [{', '.join(data.labels)}]: a teacher must know the same labels")
    return [labels.index(label) for label in data.labels]
