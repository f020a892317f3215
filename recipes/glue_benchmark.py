"""GLUE with the default encoder, shaped like MT-DNN's table: tuned single-task training, the one
multi-task model, multi-task + `mtl-nlp finetune`, and the grouping `mtl-nlp affinity` advises.

    python recipes/glue_benchmark.py --subset 2000 --seeds 1 2 3     # sweep-sized runs
    python recipes/glue_benchmark.py --seeds 1 2 3                   # whole training sets
    python recipes/glue_benchmark.py --summary                       # the table from what has run

Stages (`--stages`, in this order by default):
- single: each task alone at every `--lrs` learning rate on the first `--sweep-seeds` seeds, and
  at the rate with the best mean validation score of that sweep on the other seeds;
- multi: recipes/configs/glue.yaml, all tasks in one model;
- private: the same with `--private-layers` top layers of each task's own (sharing.private_layers);
- finetune: each multi-task run's second stage at the run's learning rate;
- finetune_lrs: the second stage tuned as the single-task runs are (each task fine-tuned at every
  `--lrs` rate on the sweep seeds, at the rate with the best validation score on the others);
- affinity: one probe, seed 1; groups: the recommended grouping, one model per group;
- finetune_distilled: the second stage of each distill_decay run (its tasks keep their teachers);
- finetune_adapters: each multi-task run's adapter second stage (`finetune --adapters`: a LoRA
  adapter and head per task on the frozen multi-task encoder, one checkpoint);
- lora, lora_base, lora_base_top2: per-task LoRA adapters on a frozen encoder, on a trained one,
  and on a trained one in the top 2 layers only; lora_heads_5e-4, lora_2e-3: on a frozen encoder
  with the heads at the adapters' rate, and with both at 2e-3;
- distill, distill_decay, distill_t2, distill_mix, distill_mix_decay: the one model taught by the
  seed's tuned single-task runs (teacher annealing), with layer-wise lr decay 0.9, teacher
  temperature 2, a layer mix on every task, or mix and decay; multi_mix, multi_decay: the one
  model with those options and no teachers.
With `--lrs-from OTHER/results.json` the single-task and finetune_lrs runs take, on every seed,
the rate each task's sweep chose in that other benchmark (e.g. larger training sets at the rates
swept on subsets) instead of sweeping; `--task-lrs cola=1e-4 ...` gives them outright (an earlier
sweep's choice). `--override KEY=VALUE ...` adds config overrides to the end of every run (e.g.
`train.eval_every=epoch`), to measure one setting against the defaults in another --out.
Every run is a fresh process of the installed CLI; results accumulate in OUT/results.json, so an
interrupted benchmark goes on where it stopped, and while OUT/PAUSE exists no new run starts.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.glue_tables import best_learning_rate, glue_summary
from safetensors import safe_open

from mtl_nlp.common.run_files import (
    ADAPTERS_STAGE_DIR,
    AFFINITY_FILE,
    CHECKPOINT_CONFIG,
    FINETUNED_DIR,
    HEADS_WEIGHTS,
    STATE_DIR,
)
from mtl_nlp.modeling.adapters import ADAPTERS_DIR
from mtl_nlp.reports.run_results import read_metrics, read_trainer_state

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "recipes" / "configs" / "glue.yaml"
TASKS = ["cola", "mrpc", "rte", "stsb", "sst2", "qnli", "mnli"]
EVERY_TASK_MIXED = f"tasks=[{', '.join(f'{{name: {task}, layer_mix: true}}' for task in TASKS)}]"
# The distilled one model: the seed's tuned single-task runs are its teachers (`distill.teachers`).
DISTILL_ARMS = {
    "distill": [],
    "distill_decay": ["train.layer_lr_decay=0.9"],
    "distill_t2": ["distill.temperature=2"],
    "distill_mix": [EVERY_TASK_MIXED],
    "distill_mix_decay": [EVERY_TASK_MIXED,
                          "train.layer_lr_decay=0.9"],
    "multi_mix": [EVERY_TASK_MIXED],
    "multi_decay": ["train.layer_lr_decay=0.9"],
}
# Per-task LoRA adapters (sharing.adapters), the adapters at 5e-4 (LoRA's GLUE rates for a base-size
# encoder are 4e-4 to 5e-4): on a frozen encoder; with the shared encoder trained at train.lr; and
# with it trained and the adapters in the top 2 layers only (the bottom 4 run once for all tasks).
LORA = ["sharing.adapters.method=lora", "sharing.adapters.lr=5e-4"]
ADAPTER_ARMS = {
    "lora": LORA,
    "lora_base": [*LORA, "sharing.adapters.train_base=true"],
    "lora_base_top2": [*LORA, "sharing.adapters.train_base=true", "sharing.adapters.layers=2"],
    # on a frozen encoder the heads are the rest of what trains: at the adapters' rate, as peft
    # trains `modules_to_save`, and both at 2e-3 (3 epochs are a tenth of LoRA's GLUE schedules)
    "lora_heads_5e-4": [*LORA, "train.head_lr=5e-4"],
    "lora_2e-3": ["sharing.adapters.method=lora", "sharing.adapters.lr=2e-3", "train.head_lr=2e-3"],
}
ONE_MODEL_ARMS = {**DISTILL_ARMS, **ADAPTER_ARMS}
STAGES = ["single", "multi", "private", "finetune", "finetune_adapters", "finetune_lrs", "affinity", "groups",
          *ONE_MODEL_ARMS, "finetune_distilled"]


def run_cli(arguments: list[str], run_dir: Path, fresh: bool = True) -> dict:
    """One `mtl-nlp` command in its own process; its wall time and the run's files."""
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)  # a run cut off earlier starts over
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mtl_nlp.cli", *arguments], cwd=ROOT,
                            capture_output=True, text=True)
    wall = round(time.perf_counter() - started, 1)
    if result.returncode != 0:
        raise RuntimeError(f"mtl-nlp {' '.join(arguments)} failed:\n{result.stderr[-3000:]}")
    return {"wall_seconds": wall}


def trained(run_dir: Path, wall: dict) -> dict:
    """A training run's test metrics, selected validation score and wall time."""
    state = read_trainer_state(run_dir)
    return {"metrics": read_metrics(run_dir), "validation": state["best_validation_overall"],
            "steps": state["step"], "checkpoint_bytes": checkpoint_bytes(run_dir),
            "seconds_per_step": round(state["train_seconds"] / max(state["step"], 1), 4),
            "peak_memory_mb": state.get("peak_memory_mb"), "task_parameters": task_parameters(run_dir),
            **wall}


def task_parameters(run_dir: Path) -> dict[str, int]:
    """Each task's own parameters in the checkpoint in `run_dir`: its head, and its adapter where
    it has one (what a task adds to the shared encoder)."""
    def sizes(path: Path) -> dict[str, int]:
        with safe_open(str(path), "pt") as weights:
            return {name: math.prod(weights.get_slice(name).get_shape()) for name in weights.keys()}

    heads = sizes(run_dir / HEADS_WEIGHTS)
    counts = {task: sum(n for name, n in heads.items() if name.startswith(f"{task}.")) for task in TASKS}
    for task in TASKS:
        adapter = run_dir / ADAPTERS_DIR / task / "adapter_model.safetensors"
        if adapter.is_file():
            counts[task] += sum(sizes(adapter).values())
    return counts


def checkpoint_bytes(run_dir: Path) -> int:
    """The size on disk of the checkpoint in `run_dir`, as its manifest lists its files."""
    files = json.loads((run_dir / CHECKPOINT_CONFIG).read_text()).get("files", {})
    return sum(file["size"] for file in files.values())


def common(args: argparse.Namespace, seed: int, output: Path) -> list[str]:
    limit = [f"max_train_examples={args.subset}"] if args.subset else []
    return [f"data_dir={args.data_dir}", f"seed={seed}", f"output_dir={output}", *limit]


def swept_learning_rate(args: argparse.Namespace, results: dict, task: str,
                        arm: str = "single") -> float | None:
    """The learning rate the sweep seeds chose for `task` in `arm` ("single" or "finetune_lr"), or
    None while the sweep is unfinished."""
    by_lr: dict[float, list[dict]] = {}
    for lr in args.lrs:
        for seed in args.seeds[:args.sweep_seeds]:
            run = results.get(f"{arm}/{task}/lr{lr}/seed{seed}")
            if run is None:
                return None
            by_lr.setdefault(lr, []).append(run)
    return best_learning_rate(by_lr)


def chosen_elsewhere(lrs: list[float], results: dict, task: str, arm: str) -> float | None:
    """The learning rate another benchmark's sweep chose for `task` in `arm`, whatever seeds that
    sweep ran (`best_learning_rate` keeps to the seeds that ran every rate), or None if some rate
    of `lrs` never ran there."""
    by_lr: dict[float, list[dict]] = {}
    for key, run in results.items():
        if key.startswith(f"{arm}/{task}/lr") and run["lr"] in lrs:
            by_lr.setdefault(run["lr"], []).append(run)
    return best_learning_rate(by_lr) if len(by_lr) == len(set(lrs)) else None


def plan(args: argparse.Namespace, out: Path, results: dict) -> list[tuple[str, Callable[[], dict]]]:
    """(result key, run) of every run the chosen stages still need and can start, in order: a
    single-task run past the sweep seeds waits for the sweep to choose its learning rate."""
    runs = []
    if args.lrs_from and not Path(args.lrs_from).is_file():
        raise SystemExit(f"--lrs-from {args.lrs_from}: no such file (a benchmark's results.json)")
    swept = json.loads(Path(args.lrs_from).read_text()) if args.lrs_from else None

    def rates(position: int, task: str, arm: str) -> list[float]:
        """The rates to run: every rate on the sweep seeds, then the chosen one (once chosen)."""
        if swept is not None:
            chosen = chosen_elsewhere(args.lrs, swept, task, arm)
            if chosen is None:
                raise SystemExit(f"{args.lrs_from} holds no finished {arm} sweep of {task} "
                                 f"at --lrs {args.lrs}")
            return [chosen]
        if arm == "single" and task in args.task_lrs:
            return [args.task_lrs[task]]
        chosen = swept_learning_rate(args, results, task, arm)
        return args.lrs if position < args.sweep_seeds else [chosen] if chosen else []

    for position, seed in enumerate(args.seeds):
        if "single" in args.stages:
            for task in TASKS:
                for lr in rates(position, task, "single"):
                    key = f"single/{task}/lr{lr}/seed{seed}"
                    folder = out / "runs" / key.replace("/", "-")
                    arguments = ["train", "--config", str(CONFIG), *common(args, seed, folder),
                                 f"tasks=[{task}]", f"train.lr={lr}", f"train.epochs={args.single_epochs}",
                                 *args.override]
                    runs.append((key, lambda a=arguments, f=folder, t=task, r=lr, s=seed: {
                        "task": t, "lr": r, "seed": s, **trained(f, run_cli(a, f))}))
        multi = out / "runs" / f"multi-seed{seed}"
        if "multi" in args.stages:
            arguments = ["train", "--config", str(CONFIG), *common(args, seed, multi), *args.override]
            runs.append((f"multi/seed{seed}", lambda a=arguments, f=multi, s=seed: {
                "seed": s, **trained(f, run_cli(a, f))}))
        if "private" in args.stages:
            folder = out / "runs" / f"private-seed{seed}"
            arguments = ["train", "--config", str(CONFIG), *common(args, seed, folder),
                         f"sharing.private_layers={args.private_layers}", *args.override]
            runs.append((f"private/seed{seed}", lambda a=arguments, f=folder, s=seed: {
                "seed": s, "private_layers": args.private_layers, **trained(f, run_cli(a, f))}))
        for arm, overrides in ONE_MODEL_ARMS.items():
            if arm not in args.stages:
                continue
            chosen = {task: rates(position, task, "single") for task in TASKS}
            keys = {task: f"single/{task}/lr{lrs[0]}/seed{seed}"
                    for task, lrs in chosen.items() if len(lrs) == 1}
            teachers = {task: out / "runs" / key.replace("/", "-") for task, key in keys.items()}
            trained_all = len(keys) == len(TASKS) and all(key in results for key in keys.values())
            if arm.startswith("distill") and not trained_all:
                continue  # the teachers are not all trained yet
            folder = out / "runs" / f"{arm}-seed{seed}"
            named = [f"distill.teachers.{task}={path}" for task, path in teachers.items()]
            arguments = ["train", "--config", str(CONFIG), *common(args, seed, folder), *overrides,
                         *(named if arm.startswith("distill") else []), *args.override]
            runs.append((f"{arm}/seed{seed}", lambda a=arguments, f=folder, s=seed: {
                "seed": s, **trained(f, run_cli(a, f))}))
        if "finetune" in args.stages:
            runs.append((f"finetune/seed{seed}",
                         lambda f=multi, s=seed: finetuned(f, s, args.override)))
        distilled = out / "runs" / f"distill_decay-seed{seed}"
        if "finetune_distilled" in args.stages and f"distill_decay/seed{seed}" in results:
            # the distilled student's second stage: each task keeps its teacher
            runs.append((f"finetune_distilled/seed{seed}",
                         lambda f=distilled, s=seed: finetuned(f, s, args.override)))
        if "finetune_adapters" in args.stages:  # each task's adapter on the frozen multi-task encoder
            runs.append((f"finetune_adapters/seed{seed}", lambda f=multi, s=seed: finetuned(
                f, s, ["--adapters", "sharing.adapters.lr=5e-4", *args.override])))
        if "finetune_lrs" in args.stages:
            for task in TASKS:
                for lr in rates(position, task, "finetune_lr"):
                    key = f"finetune_lr/{task}/lr{lr}/seed{seed}"
                    folder = out / "runs" / key.replace("/", "-")
                    runs.append((key, lambda f=multi, k=folder, t=task, r=lr, s=seed: {
                        "task": t, "lr": r, "seed": s,
                        **finetuned_at(f, k, t, [f"train.lr={r}", *args.override])}))
    if "affinity" in args.stages:
        folder = out / "runs" / "affinity"
        arguments = ["affinity", "--config", str(CONFIG), *common(args, 1, folder),
                     f"--steps={args.probe_steps}", *args.override]
        runs.append(("affinity", lambda a=arguments, f=folder: probed(a, f)))
    if "groups" in args.stages:
        for seed in args.seeds:
            runs.append((f"groups/seed{seed}", lambda s=seed: grouped(args, out, results, s)))
    return [(key, run) for key, run in runs if key not in results]


def probed(arguments: list[str], folder: Path) -> dict:
    """The affinity probe's matrix, groupings and recommendation, with its wall time."""
    wall = run_cli(arguments, folder)
    return {**json.loads((folder / AFFINITY_FILE).read_text()), **wall}


def finetuned(multi: Path, seed: int, overrides: list[str]) -> dict:
    """The second stage of one multi-task run: every task's fine-tuned test metrics."""
    shutil.rmtree(multi / FINETUNED_DIR, ignore_errors=True)
    wall = run_cli(["finetune", str(multi), *overrides], multi, fresh=False)
    metrics = {task: read_metrics(multi / FINETUNED_DIR / task)[task]
               for task in TASKS}
    # what there is to serve: one checkpoint of T adapters, else T whole models
    assembled = multi / FINETUNED_DIR / ADAPTERS_STAGE_DIR
    served = [assembled] if assembled.is_dir() else [multi / FINETUNED_DIR / task for task in TASKS]
    return {"seed": seed, "metrics": metrics, "checkpoint_bytes": sum(map(checkpoint_bytes, served)), **wall}


def finetuned_at(multi: Path, folder: Path, task: str, overrides: list[str]) -> dict:
    """The second stage of one task of one multi-task run with `overrides` (its learning rate
    among them), kept in `folder` (its test metrics, selected validation score, steps and wall
    time)."""
    produced = multi / FINETUNED_DIR / task
    shutil.rmtree(produced, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    wall = run_cli(["finetune", str(multi), "--tasks", task, *overrides], multi, fresh=False)
    shutil.rmtree(produced / STATE_DIR, ignore_errors=True)  # resume state: not needed once finished
    shutil.move(produced, folder)
    return trained(folder, wall)


def grouped(args: argparse.Namespace, out: Path, results: dict, seed: int) -> dict:
    """One model per group of the affinity probe's recommended grouping."""
    groups = results["affinity"]["recommended"]["groups"]
    metrics, wall = {}, 0.0
    for index, group in enumerate(groups):
        folder = out / "runs" / f"group{index}-seed{seed}"
        arguments = ["train", "--config", str(CONFIG), *common(args, seed, folder),
                     f"tasks=[{', '.join(group)}]", *args.override]
        run = trained(folder, run_cli(arguments, folder))
        metrics.update({task: run["metrics"][task] for task in group})
        wall += run["wall_seconds"]
    return {"seed": seed, "groups": groups, "metrics": metrics, "wall_seconds": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="*", choices=STAGES, default=STAGES)
    parser.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    parser.add_argument("--lrs", nargs="*", type=float, default=[5e-5, 1e-4, 2e-4])
    parser.add_argument("--sweep-seeds", type=int, default=1, help="how many of the seeds, from the "
                        "first, run every learning rate; the others run the rate they chose")
    parser.add_argument("--task-lrs", nargs="*", default=[], metavar="TASK=LR",
                        help="single-task learning rates chosen before (no sweep for these tasks)")
    parser.add_argument("--lrs-from", help="results.json of a benchmark whose sweeps choose the rates")
    parser.add_argument("--subset", type=int, help="train on a seeded subset of each task "
                        "(max_train_examples)")
    parser.add_argument("--single-epochs", type=float, default=3.0, help="epochs of each single-task run")
    parser.add_argument("--private-layers", type=int, default=2,
                        help="top layers of each task's own in the private stage")
    parser.add_argument("--probe-steps", type=int, default=300, help="steps of the affinity probe")
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides added to every run (train, finetune, affinity)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(ROOT / "outputs" / "glue_benchmark"))
    parser.add_argument("--summary", action="store_true", help="print the table, run nothing")
    args = parser.parse_args()
    malformed = [override for override in args.override if "=" not in override]
    if malformed:
        parser.error(f"--override takes KEY=VALUE pairs (e.g. train.eval_every=epoch); got {malformed[0]!r}")
    args.task_lrs = {task: float(lr) for task, lr in (item.split("=") for item in args.task_lrs)}
    if not (Path(args.data_dir) / "glue").is_dir():
        print(f"benchmark skipped: no GLUE data at {args.data_dir}/glue (see ../shared/data/README.md)")
        return
    out = Path(args.out) / (f"subset{args.subset}" if args.subset else "full")
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    # planned again after every run: a finished sweep decides the learning rate of later seeds
    while not args.summary and (pending := plan(args, out, results)):
        key, run = pending[0]
        while (Path(args.out) / "PAUSE").exists():
            time.sleep(5)
        print(f"running {key}", flush=True)
        results[key] = run()
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    print(glue_summary(results, TASKS))


if __name__ == "__main__":
    main()
