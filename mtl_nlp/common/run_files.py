"""The names of the files and folders a run, and the commands after it, write into its output_dir,
in one place, and how to find its newest resumable state (read by config loading as well as by
training)."""

from __future__ import annotations

import json
from pathlib import Path

# The checkpoint (output_dir): see the README's "The checkpoint".
CHECKPOINT_CONFIG = "mtl_nlp.json"  # a checkpoint's self-description, holding its run config
METRICS_FILE = "metrics.json"  # test scores of the best checkpoint
TRAINER_STATE = "trainer_state.json"  # steps, validation history, losses, tokens/s
HEADS_WEIGHTS = "heads.safetensors"  # every task's head (the encoder is model.safetensors)
PRIVATE_WEIGHTS = "private_layers.safetensors"  # tasks' private encoder layers, when any
CURVES = "curves.png"  # training losses and validation scores
CONFLICTS = "conflicts.json"  # gradient cosines between tasks (diagnostics.conflict_every)
CONFLICTS_PLOT = "conflicts.png"
ONNX_DIR = "onnx"  # the ONNX Runtime engine's export, made on first use (not published)
ONNX_MANIFEST = "manifest.json"  # in an ONNX export: inputs, each task's output and labels

# What the commands after a run write into it.
EVALUATION_FILE = "evaluation.json"  # `mtl-nlp evaluate` (never overwrites metrics.json)
AFFINITY_FILE = "affinity.json"  # `mtl-nlp affinity`: the matrix and the groupings
AFFINITY_PLOT = "affinity.png"
FINETUNED_DIR = "finetuned"  # `mtl-nlp finetune`: DIR/finetuned/<task>/, one checkpoint per task
FINETUNE_SUMMARY = "finetune.json"  # DIR/finetuned/finetune.json: scores before and after
ONE_PASS_DIR = "one_pass"  # DIR/finetuned/one_pass/: every task's private-only second stage, assembled
TEACHERS_DIR = "teachers"  # `mtl-nlp distill`: DIR/teachers/<task>/, the teachers it trained
TEACHER_RECORD = "teacher.json"  # in a teacher's folder: the settings and data it was trained on
DISTILL_SUMMARY = "distill.json"  # `mtl-nlp distill`: each task's teacher and student scores
ADAPTERS_STAGE_DIR = "adapters"  # DIR/finetuned/adapters/: the adapter second stage, one base and T adapters
ALONE_DIR = "alone"  # DIR/finetuned/alone/<task>/: the task trained alone from the pretrained encoder

# Resumable training states (training/state_files.py writes them).
STATE_DIR = "state"  # the newest complete state, inside output_dir
WRITING = "state.new"  # the state being written
COMPLETE = "complete.json"  # written last into a state folder: {"step": N}
STATE_RUN_CONFIG = "run_config.json"  # in a state folder: the config of the run that wrote it
STATE_PROGRESS = "trainer_progress.json"  # in a state folder: progress and loader positions


def state_step(folder: Path) -> int | None:
    """The step of a complete state folder, None when it is incomplete or not a state."""
    marker = folder / COMPLETE
    try:
        return int(json.loads(marker.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def newest_state(path: Path) -> Path | None:
    """The newest complete state of a run: `path` itself when it is a complete state folder,
    else the complete state folder inside output_dir `path` with the highest step."""
    if state_step(path) is not None:
        return path
    if not path.is_dir():
        return None
    candidates = [folder for folder in path.iterdir()
                  if folder.is_dir() and folder.name.startswith(STATE_DIR) and state_step(folder) is not None]
    return max(candidates, key=state_step, default=None)
