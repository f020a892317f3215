"""Two-stage fine-tuning (MT-DNN's recipe): each task of a multi-task checkpoint trained on alone,
starting from the checkpoint's encoder and the task's head, into an ordinary checkpoint of its own.

The stage trades serving cost for score: the multi-task checkpoint answers every task from one
encoder pass, while each fine-tuned checkpoint is a model of its own (one pass per task). With
private layers there is a cheaper stage (`private_only`): the shared encoder stays frozen and only
each task's private layers and head train, so the tasks' results assemble into one checkpoint
that still answers every task from one shared pass (DIR/finetuned/one_pass/).

A second stage is not always the best use of a task's training: the mix can move the shared
encoder away from a task so far that training it alone from the pretrained encoder does better.
`compare_alone` trains each task that way too (DIR/finetuned/alone/<task>/) and recommends, per
task, the checkpoint with the better validation score: the multi-task model itself (when its
second stage kept the starting point), the fine-tuned one, or the one trained alone.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from mtl_nlp.common.run_files import (
    ADAPTERS_STAGE_DIR,
    ALONE_DIR,
    FINETUNE_SUMMARY,
    FINETUNED_DIR,
    METRICS_FILE,
    ONE_PASS_DIR,
)
from mtl_nlp.config import ConfigError, load_config
from mtl_nlp.modeling.model import MultiTaskModel, owning_task, read_checkpoint_config
from mtl_nlp.reports.run_results import MAIN_METRICS, main_metrics_of, read_metrics, read_trainer_state
from mtl_nlp.workflows.adapter_stage import STAGE_KEYS, adapter_stage_config, assemble_adapters

logger = logging.getLogger(__name__)

FIXED_KEYS = ("tasks", "output_dir", "init_from", "resume_from")  # what finetune sets itself
# The seed also draws the validation split held out of a task's training data: another seed could
# validate the second stage on examples the multi-task model trained on.
KEPT_KEYS = ("seed",)


def finetune_tasks(
    directory: str | Path, tasks: list[str] | None = None, overrides: list[str] | None = None,
    private_only: bool = False, compare_alone: bool = False, overwrite: bool = False,
    adapters: bool = False,
) -> dict[str, Any]:
    """Train each of `tasks` (default: all of the checkpoint's) alone from checkpoint `directory`,
    with the checkpoint's run config and `overrides` (key=value), into DIR/finetuned/<task>/ (the
    heads of an entry of several heads together, into DIR/finetuned/<entry>/); each
    run selects its best checkpoint on validation, the starting point included. Returns (and
    writes to DIR/finetuned/finetune.json) each task's test score before and after.

    `private_only`: the shared encoder stays frozen (sharing.freeze_encoder) and each task trains
    its private layers and head only; the results are also assembled into DIR/finetuned/one_pass/,
    one checkpoint answering every task from one shared encoder pass.

    `compare_alone`: each task is also trained alone from the pretrained encoder with the same
    settings (DIR/finetuned/alone/<task>/), and each row says which checkpoint to serve the task
    from ("recommended", chosen on validation; ties keep the multi-task side).

    `adapters`: the encoder stays frozen and each task trains a LoRA adapter and its head on it
    (workflows/adapter_stage.py); the results are also assembled into DIR/finetuned/adapters/, one
    checkpoint holding the multi-task encoder once and every task's adapter.

    An earlier second stage of a task in DIR/finetuned/ is refused by name, unless `overwrite`
    replaces it."""
    from mtl_nlp.training.run import train_from_config  # the whole training stack, only when run

    directory = Path(directory)
    saved = read_checkpoint_config(directory)
    run_config = saved.get("run_config")
    if run_config is None:
        raise ConfigError(f"{directory} holds no run config, so its tasks' data is unknown")
    # the heads of an entry of several heads train together: one run of the entry answers for each
    entry_of = {task["name"]: task.get("entry") or task["name"] for task in saved["tasks"]}
    names = _chosen_tasks(list(entry_of), tasks)
    runs = list(dict.fromkeys(entry_of[name] for name in names))
    # folders under DIR/finetuned/ that this mode writes besides the tasks' own
    reserved = [name for name, used in ((ONE_PASS_DIR, private_only), (ALONE_DIR, compare_alone),
                                        (ADAPTERS_STAGE_DIR, adapters)) if used]
    clashing = [run for run in runs if run in reserved]
    if clashing:
        raise ConfigError(f"task {clashing[0]!r} would be written over DIR/finetuned/{clashing[0]}, which "
                          f"finetune keeps for itself in this mode ({', '.join(reserved)}): rename the task")
    if sum((private_only, compare_alone, adapters)) > 1:
        raise ConfigError("--compare-alone weighs whole-model checkpoints, one encoder pass each; "
                          "--private-layers-only and --adapters keep one base: choose one of the three")
    _check_overrides(overrides or [], private_only, adapters)
    if adapters:
        run_config = adapter_stage_config(run_config, directory)
    if private_only:
        if not saved.get("sharing", {}).get("private_layers"):
            raise ConfigError(f"{directory} has no private layers (sharing.private_layers=0): the second "
                              "stage of private layers only needs a run with sharing.private_layers=k")
        run_config = {**run_config, "sharing": {**run_config.get("sharing", {}), "freeze_encoder": True}}
    _clear_earlier_stages(directory, runs, reserved, compare_alone, overwrite)
    before_metrics = _read_metrics(directory)
    mains = main_metrics_of(before_metrics)
    rows = []
    source = f"{directory}/mtl_nlp.json run_config"
    for run in runs:
        output = directory / FINETUNED_DIR / run
        names_of_run = {run, *(name for name, entry in entry_of.items() if entry == run)}
        base = {**run_config, "tasks": [_task_entry(run_config["tasks"], run)], "resume_from": None,
                "init_from": str(directory), "output_dir": str(output),
                "distill": _teachers_of(run_config, names_of_run)}
        after = train_from_config(load_config(None, overrides, base=base, base_source=source))
        if compare_alone:
            alone_output = directory / FINETUNED_DIR / ALONE_DIR / run
            # single-task training as it is: from the pretrained encoder, without teachers
            base = {**base, "init_from": None, "output_dir": str(alone_output), "distill": {}}
            alone = train_from_config(load_config(None, overrides, base=base, base_source=source))
            recommended, served_from, validation = recommend(directory, output, alone_output)
        for name in (name for name in names if entry_of[name] == run):
            metric = mains.get(name) or after[MAIN_METRICS][name]
            before = before_metrics.get(name, {}).get(metric)
            row = {"task": name, "metric": metric, "multi_task": before,
                   "finetuned": after[name][metric], "output_dir": str(output)}
            if compare_alone:
                row.update(alone=alone[name][metric], alone_dir=str(alone_output), recommended=recommended,
                           recommended_dir=str(served_from), validation=validation)
            rows.append(row)
    # Serving every task after the second stage: one pass per fine-tuned checkpoint, plus the
    # multi-task checkpoint's for the tasks left as they were.
    left = len(set(entry_of.values()) - set(runs))
    summary = {"checkpoint": str(directory), "tasks": rows,
               "encoder_passes": {"multi_task": 1, "finetuned": len(runs) + (1 if left else 0)}}
    if compare_alone:
        served = {row["recommended_dir"] for row in rows} | ({str(directory)} if left else set())
        summary["encoder_passes"]["recommended"] = len(served)
    if private_only:
        assembled = assemble_one_pass(directory, runs, directory / FINETUNED_DIR / ONE_PASS_DIR)
        summary["one_pass"] = str(assembled)
        summary["encoder_passes"]["one_pass"] = 1
    if adapters:
        assembled = assemble_adapters(directory, runs, directory / FINETUNED_DIR / ADAPTERS_STAGE_DIR)
        summary["adapters"] = str(assembled)
        layers = read_checkpoint_config(assembled)["sharing"]["adapters"]["layers"]
        # adapters on every layer: a pass per task; in the top k only: the layers below them once
        summary["encoder_passes"]["adapters"] = len(set(entry_of.values())) if layers == "all" else 1
    (directory / FINETUNED_DIR / FINETUNE_SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def recommend(directory: Path, finetuned: Path, alone: Path) -> tuple[str, Path, dict[str, float]]:
    """Which checkpoint serves a task, by validation score (each run's selected checkpoint's, as
    trainer_state.json records it): the one trained alone only when it scores higher; else the
    fine-tuned one, or the multi-task checkpoint itself when the second stage kept its start.
    Returns (choice, its folder, both validation scores), the scores to show how close it was."""
    tuned = read_trainer_state(finetuned)
    scores = {"finetuned": tuned["best_validation_overall"],
              "alone": read_trainer_state(alone)["best_validation_overall"]}
    if scores["alone"] > scores["finetuned"]:
        return "alone", alone, scores
    if tuned["best_step"] == 0:  # no step of the second stage beat the multi-task weights
        return "multi_task", directory, scores
    return "finetuned", finetuned, scores


def assemble_one_pass(directory: Path, runs: list[str], output: Path) -> Path:
    """One checkpoint: `directory`'s multi-task model with the private layers and heads of each of
    `runs` (DIR/finetuned/<run>/) in place of its own. Every run must have kept the shared encoder
    as it was, which the private-only stage guarantees; a run that did not is refused by name."""
    from transformers import AutoTokenizer

    model = MultiTaskModel.from_pretrained(directory)
    state = model.state_dict()
    for run in runs:
        tuned = MultiTaskModel.from_pretrained(directory / FINETUNED_DIR / run).state_dict()
        for key, tensor in tuned.items():
            if owning_task(key) is None and not torch.equal(tensor, state[key]):
                raise ConfigError(f"{directory / FINETUNED_DIR / run} changed the shared encoder ({key}): "
                                  "only a private-only second stage assembles into one pass")
        state.update({key: tensor for key, tensor in tuned.items() if owning_task(key) is not None})
    model.load_state_dict(state)
    saved = read_checkpoint_config(directory)
    extra = {key: value for key, value in saved.items() if key not in model.checkpoint_config()}
    model.save_pretrained(output, tokenizer=AutoTokenizer.from_pretrained(str(directory)), extra=extra)
    return output


def _check_overrides(overrides: list[str], private_only: bool, adapters: bool) -> None:
    """ConfigError for an override of a key finetune sets itself, or keeps from the run."""
    fixed = (*FIXED_KEYS, *(("sharing.freeze_encoder",) if private_only else ()),
             *(STAGE_KEYS if adapters else ()))
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key in KEPT_KEYS:
            raise ConfigError(f"finetune keeps the multi-task run's {key}: it draws the validation split "
                              "held out of each task's training data, and another one could validate on "
                              f"examples the multi-task model trained on; drop {override!r}")
        if key in fixed:
            where = (f"; it writes DIR/{FINETUNED_DIR}/ (--overwrite replaces an earlier second stage there)"
                     if key == "output_dir" else "")
            raise ConfigError(f"finetune sets {key} itself ({', '.join(fixed)}){where}; drop {override!r}")


def _clear_earlier_stages(
    directory: Path, runs: list[str], reserved: list[str], compare_alone: bool, overwrite: bool
) -> None:
    """The folders this finetune writes, emptied with `overwrite`; else ConfigError naming the
    ones an earlier finetune left, which would otherwise be refused one by one mid-way."""
    finetuned = directory / FINETUNED_DIR
    folders = [finetuned / run for run in runs]
    folders += [finetuned / ALONE_DIR / run for run in runs] if compare_alone else []
    folders += [finetuned / name for name in reserved if name != ALONE_DIR]  # one_pass/, adapters/
    earlier = [folder for folder in folders if folder.exists()]
    if earlier and not overwrite:
        shown = ", ".join(str(folder.relative_to(directory)) for folder in earlier)
        raise ConfigError(f"{finetuned} already holds a second stage ({shown}): keep it (choose other "
                          "--tasks, or move the folder away) or replace it with --overwrite")
    for folder in earlier:
        shutil.rmtree(folder)


def _teachers_of(run_config: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """A distilled run's distill section for a stage that trains `names` (a task, or an entry and
    its heads) alone: their teachers teach it on, the other tasks' are left out."""
    distill = dict(run_config.get("distill") or {})
    distill["teachers"] = {task: teacher for task, teacher in (distill.get("teachers") or {}).items()
                           if task in names}
    return distill


def _chosen_tasks(available: list[str], asked: list[str] | None) -> list[str]:
    if not asked:
        return available
    unknown = [name for name in asked if name not in available]
    if unknown:
        raise ConfigError(f"task(s) {', '.join(unknown)} not in the checkpoint, whose tasks are: "
                          f"{', '.join(available)}")
    return list(dict.fromkeys(asked))


def _task_entry(entries: list[Any], name: str) -> Any:
    """The run config's `tasks` entry of task `name` (a name, or an inline mapping)."""
    for entry in entries:
        if entry == name or (isinstance(entry, dict) and entry.get("name") == name):
            return entry
    raise ConfigError(f"task {name!r} is not in the checkpoint's run config tasks")


def _read_metrics(directory: Path) -> dict[str, Any]:
    try:
        return read_metrics(directory)
    except FileNotFoundError:
        raise ConfigError(f"{directory} has no {METRICS_FILE}: finetune compares each task with the "
                          "multi-task run's test scores, so finetune a finished run") from None


def format_finetune(summary: dict[str, Any]) -> str:
    """The before/after table and the serving cost, as markdown."""
    compared = "recommended" in summary["encoder_passes"]
    header = "| task | metric | multi-task | fine-tuned | difference |"
    rule = "|---|---|---:|---:|---:|"
    if compared:
        header += " alone | validation: fine-tuned / alone | recommended |"
        rule += "---:|---:|---|"
    lines = [header, rule]
    for row in summary["tasks"]:
        before, after = row["multi_task"], row["finetuned"]
        difference = "-" if before is None else f"{after - before:+.4f}"
        shown = "-" if before is None else f"{before:.4f}"
        line = f"| {row['task']} | {row['metric']} | {shown} | {after:.4f} | {difference} |"
        if compared:
            scores = row["validation"]
            line += (f" {row['alone']:.4f} | {scores['finetuned']:.4f} / {scores['alone']:.4f} |"
                     f" {row['recommended']}: {row['recommended_dir']} |")
        lines.append(line)
    passes = summary["encoder_passes"]["finetuned"]
    lines += ["", "serving every task: the multi-task checkpoint takes 1 encoder pass per text; with the "
              f"fine-tuned checkpoints, each taking its own pass, it takes {passes}."]
    if compared:
        lines.append("with the recommended checkpoints it takes "
                     f"{summary['encoder_passes']['recommended']}. The choice follows the validation "
                     "scores: a gap of a point or two on a few hundred validation examples may be noise.")
    if "adapters" in summary:
        lines.append(f"{summary['adapters']}: every task's adapter on one copy of the multi-task encoder "
                     "(each task's adapter runs its own pass, or its own top layers, over that base).")
    if "one_pass" in summary:
        lines.append(f"{summary['one_pass']}: every fine-tuned task in one checkpoint, 1 shared pass per "
                     "text (then each task's private layers), as the multi-task checkpoint.")
    return "\n".join(lines)
