"""`mtl-nlp distill`: single-task teachers distilled into the one multi-task model (BAM!, MT-DNN-KD).

Each task of the config learns from a teacher beside its gold labels: the checkpoint that
`distill.teachers.<task>` names, or else the task trained alone with the config's settings into
output_dir/teachers/<task>/ (reused by a later call when its settings and data are the same).
Then the multi-task student trains in output_dir with teacher annealing, and the summary compares
each task's test score, teacher against student, with the encoder passes each side takes to serve
every task (output_dir/distill.json keeps it).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from mtl_nlp.common.run_files import (
    CHECKPOINT_CONFIG,
    CONFLICTS,
    CONFLICTS_PLOT,
    CURVES,
    DISTILL_SUMMARY,
    METRICS_FILE,
    ONNX_DIR,
    STATE_DIR,
    TEACHER_RECORD,
    TEACHERS_DIR,
    TRAINER_STATE,
    WRITING,
)
from mtl_nlp.common.task_types import UNTAUGHT_TYPES
from mtl_nlp.config import ConfigError, RunConfig, dotted_keys, load_config
from mtl_nlp.modeling.checkpoint_files import MANIFEST, PENDING
from mtl_nlp.modeling.model import is_checkpoint, read_checkpoint_config
from mtl_nlp.registry import TaskSpec, resolve_tasks
from mtl_nlp.reports.run_results import MAIN_METRICS, read_metrics_if_written

logger = logging.getLogger(__name__)

# What a training run writes into output_dir besides its checkpoint's files (the model card is
# among those), removed with the student it belongs to ("logs": training.setup.LOGS_DIR).
STUDENT_FILES = (METRICS_FILE, TRAINER_STATE, CURVES, CONFLICTS, CONFLICTS_PLOT, ONNX_DIR, "logs", WRITING,
                 PENDING, DISTILL_SUMMARY, "README.md")


def distill_tasks(
    config: RunConfig, overwrite: bool = False, retrain_teachers: bool = False,
    taught: list[str] | None = None,
) -> dict[str, Any]:
    """Train the missing teachers, then the student from every task's teacher; return (and write
    to output_dir/distill.json) each task's teacher and student test scores.

    `taught` names the tasks that learn from a teacher (all by default); the others learn from
    their gold labels alone and get no teacher. A student already in output_dir is refused unless
    `overwrite` replaces it; a teacher folder that holds a teacher of other settings or data is
    refused unless `retrain_teachers` replaces it. Both are checked before anything is removed or
    trained."""
    from mtl_nlp.training.run import train_from_config  # the whole training stack, only when run

    output = Path(config.output_dir)
    specs = resolve_tasks(config.tasks)
    named = config.distill.teachers
    if taught is not None:
        _check_taught(taught, specs, named)
    if is_checkpoint(output) and not overwrite:
        raise ConfigError(f"output_dir {output} already holds a student; choose another output_dir or "
                          "replace it with --overwrite (the teachers in it are kept and reused)")
    teachers, to_train, trained = dict(named), [], {}
    for entry, spec in zip(config.tasks, specs):
        if spec.name in named or any(head.name in named for head in spec.head_specs):
            continue
        if taught is not None and spec.name not in taught:
            logger.info("task %s learns from its gold labels alone (not among the taught tasks)", spec.name)
            continue
        if spec.type in UNTAUGHT_TYPES:  # no teacher: its windows are the student tokenizer's own
            logger.info("task %s (%s) learns from its gold answers alone", spec.name, spec.type)
            continue
        folder = output / TEACHERS_DIR / spec.name
        teacher_config = _teacher_config(config, entry, folder)
        fingerprints = data_fingerprints(spec, teacher_config)
        teachers[spec.name] = str(folder)
        trained[spec.name] = not _reusable(folder, teacher_config, fingerprints, retrain_teachers)
        if trained[spec.name]:
            to_train.append((teacher_config, fingerprints))
        else:
            logger.info("task %s: reusing the teacher in %s", spec.name, folder)
    if is_checkpoint(output):
        _remove_student(output)
    seconds = {"teachers": 0.0}
    for teacher_config, fingerprints in to_train:
        folder = Path(teacher_config.output_dir)
        shutil.rmtree(folder, ignore_errors=True)  # a teacher of other settings, replaced on request
        started = time.perf_counter()
        train_from_config(teacher_config)
        seconds["teachers"] += time.perf_counter() - started
        record = {"run_config": teacher_config.to_dict(), "data": fingerprints}
        (folder / TEACHER_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    student_config = load_config(None, [], base={**config.to_dict(), "distill": {
        **config.to_dict()["distill"], "teachers": teachers}}, base_source="distill")
    started = time.perf_counter()
    student = train_from_config(student_config)
    seconds["student"] = time.perf_counter() - started
    summary = distill_summary(specs, teachers, trained, student, output)
    summary["seconds"] = {key: round(value, 1) for key, value in seconds.items()}
    (output / DISTILL_SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _check_taught(taught: list[str], specs: list[TaskSpec], named: dict[str, str]) -> None:
    """Refuse taught tasks the config does not have, and named teachers of tasks left untaught."""
    tasks = [spec.name for spec in specs]
    if not taught:
        raise ConfigError(f"--tasks names no task; name the tasks to teach among: {', '.join(tasks)}")
    unknown = [name for name in taught if name not in tasks]
    if unknown:
        raise ConfigError(f"--tasks names {', '.join(unknown)}, not a task of the config; its tasks: "
                          f"{', '.join(tasks)}")
    untaught = [name for name in named if (_entry(specs, name) or name) not in taught]
    if untaught:
        raise ConfigError(f"distill.teachers names a teacher for {', '.join(untaught)}, which --tasks leaves "
                          f"out ({', '.join(taught)}); add it to --tasks or drop its teacher")


def _teacher_config(config: RunConfig, entry: Any, folder: Path) -> RunConfig:
    """The config of a task's teacher: the run's settings, the task alone, into `folder`."""
    base = {**config.to_dict(), "tasks": [entry], "output_dir": str(folder), "resume_from": None,
            "init_from": None, "distill": {}}
    return load_config(None, [], base=base, base_source=f"the teacher of {folder.name}")


def data_fingerprints(spec: TaskSpec, config: RunConfig) -> dict[str, str]:
    """{split: the datasets fingerprint of the task's examples as a run of `config` reads them}:
    another file content, subset or seed is another fingerprint."""
    from mtl_nlp.data.loading import load_task_splits
    from mtl_nlp.data.pipeline import limit_examples

    raw = load_task_splits(spec, config.data_dir, config.cache_dir, config.seed)
    limits = [n for n in (config.max_train_examples, spec.max_train_examples) if n is not None]
    raw = limit_examples(raw, min(limits, default=None), config.max_eval_examples, config.seed)
    return {split: getattr(dataset, "_fingerprint", None) or "streamed" for split, dataset in raw.items()}


def _reusable(folder: Path, config: RunConfig, fingerprints: dict[str, str], retrain: bool) -> bool:
    """True when `folder` holds a finished teacher of these settings and data; False when there is
    none (or, with `retrain`, one of other settings or data, to be replaced); a ConfigError naming
    the difference otherwise."""
    if not folder.exists():
        return False
    record_file = folder / TEACHER_RECORD
    record = json.loads(record_file.read_text()) if record_file.is_file() else None
    if record is not None and is_checkpoint(folder):
        saved = dotted_keys(record["run_config"])
        changed = [key for key, value in dotted_keys(config.to_dict()).items() if saved.get(key) != value]
        if not changed and record["data"] == fingerprints:
            return True
        reason = (f"other settings ({', '.join(changed[:5])})" if changed else
                  "other data (the examples' fingerprints differ)")
    else:
        reason = "no finished run"
    if not retrain:
        raise ConfigError(f"{folder} holds a teacher of {reason}; move it away, name it with "
                          f"distill.teachers.{folder.name}=DIR to use it as it is, or replace it with "
                          "--retrain-teachers")
    return False


def _remove_student(output: Path) -> None:
    """Remove the student's files from output_dir: its checkpoint (the files its manifest lists and
    mtl_nlp.json), what its run wrote beside it (scores, reports, resumable states, tracker logs,
    ONNX export) and distill.json. Its teachers, and anything else a user put there, stay."""
    saved = read_checkpoint_config(output)
    names = {*(name.split("/")[0] for name in saved.get(MANIFEST, {})), CHECKPOINT_CONFIG, *STUDENT_FILES}
    for path in output.iterdir():
        if path.name in names or (path.is_dir() and path.name.startswith(STATE_DIR)):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def distill_summary(
    specs: list[TaskSpec], teachers: dict[str, str], trained: dict[str, bool], student: dict[str, Any],
    output: Path,
) -> dict[str, Any]:
    """distill.json: per head, its teacher's folder and test score (from the teacher's
    metrics.json; None when it has none) and the student's, and the encoder passes to serve."""
    rows = []
    teacher_of: dict[str, str] = {}
    for spec in specs:
        for head in spec.head_specs:
            teacher_of[head.name] = teachers.get(head.name, teachers.get(spec.name))
    for head, source in teacher_of.items():
        teacher_metrics = read_metrics_if_written(source) if source and Path(source).is_dir() else {}
        metric = student[MAIN_METRICS][head]
        teacher_score = teacher_metrics.get(head, {}).get(metric)
        student_score = student[head][metric]
        rows.append({"task": head, "metric": metric, "teacher": teacher_score, "student": student_score,
                     "difference": None if teacher_score is None else student_score - teacher_score,
                     "teacher_dir": source,
                     "teacher_trained_here": trained.get(head, trained.get(_entry(specs, head)))})
    passes = len({source for source in teacher_of.values() if source})
    return {"output_dir": str(output), "tasks": rows, "encoder_passes": {"teachers": passes, "student": 1}}


def _entry(specs: list[TaskSpec], head: str) -> str | None:
    return next((spec.name for spec in specs if head in {h.name for h in spec.head_specs}), None)


def format_distill(summary: dict[str, Any]) -> str:
    """The teacher/student table and the serving cost, as markdown."""
    lines = ["| task | metric | teacher | student | difference | teacher checkpoint |",
             "|---|---|---:|---:|---:|---|"]
    for row in summary["tasks"]:
        teacher = "-" if row["teacher"] is None else f"{row['teacher']:.4f}"
        difference = "-" if row["difference"] is None else f"{row['difference']:+.4f}"
        where = row["teacher_dir"] or "none (gold labels only)"
        if row["teacher_trained_here"] is False:
            where += " (reused)"
        lines.append(f"| {row['task']} | {row['metric']} | {teacher} | {row['student']:.4f} | {difference} |"
                     f" {where} |")
    passes = summary["encoder_passes"]
    lines += ["", f"serving every task: the student takes 1 encoder pass per text; the teachers take "
              f"{passes['teachers']}. {Path(summary['output_dir']) / DISTILL_SUMMARY} keeps this table."]
    return "\n".join(lines)
