"""Benchmark mtl_nlp on real data (../shared/data) with the default encoder.

    python recipes/benchmark.py --quick     # subsets, a few minutes
    python recipes/benchmark.py             # whole training sets, about 80 minutes on 2 cores

1. Each task single-task: HF Trainer vs mtl_nlp, same model, precision, lr, batch size and
   epochs; useful (non-padding) tokens/s, their ratio, padding and both test scores
   (CoNLL-2003 `--repeats` times, SST-2 and AG News once).
2. CoNLL-2003 + SST-2 + AG News jointly vs the single-task runs of part 1 (same data per task):
   test scores, MTL minus STL, wall time, padding fraction, peak memory.
3. Inference: one multi-task Predictor pass vs the three single-task Predictors on the same texts.
Each training arm runs in a fresh process. Results go to OUT/benchmark.json and a summary table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.inference_timing import benchmark_texts, compare_inference

from mtl_nlp.registry import get_task
from mtl_nlp.reports.run_results import read_metrics, read_trainer_state

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["conll2003", "sst2", "ag_news"]
SHARED = {"epochs": 1, "batch_size": 32, "lr": 5e-5, "seed": 42}


def run(command: list[str]) -> float:
    """Run a benchmark arm in its own process; return its wall seconds."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"benchmark arm failed: {' '.join(command)}\n{result.stderr[-4000:]}")
    return time.perf_counter() - started


def hf_trainer_arm(task: str, args: argparse.Namespace, out: Path) -> dict:
    command = [sys.executable, "-m", "recipes.benchmarks.hf_baseline", "--task", task,
               "--data-dir", args.data_dir, "--out", str(out), "--epochs", str(SHARED["epochs"]),
               "--batch-size", str(SHARED["batch_size"]), "--lr", str(SHARED["lr"])]
    command += limit_flags(args, style="flags")
    wall = run(command)
    return {**json.loads(out.read_text()), "wall_seconds": wall}


def mtl_arm(tasks: list[str], args: argparse.Namespace, output_dir: Path, extra: list[str] = ()) -> dict:
    shutil.rmtree(output_dir, ignore_errors=True)
    command = [sys.executable, str(ROOT / "recipes" / "cls_ner.py"), f"tasks={tasks}",
               f"data_dir={args.data_dir}", f"output_dir={output_dir}", "sampling.strategy=proportional",
               f"train.epochs={SHARED['epochs']}", f"train.batch_size={SHARED['batch_size']}",
               f"train.lr={SHARED['lr']}", f"seed={SHARED['seed']}", *limit_flags(args, "overrides"),
               *extra]
    wall = run(command)
    state = read_trainer_state(output_dir)
    metrics = read_metrics(output_dir)
    return {**{k: v for k, v in state.items() if k != "history"}, "test": metrics, "wall_seconds": wall}


def limit_flags(args: argparse.Namespace, style: str) -> list[str]:
    if not args.quick:
        return []
    if style == "flags":
        return ["--max-train-examples", str(args.max_train), "--max-eval-examples", str(args.max_eval)]
    return [f"max_train_examples={args.max_train}", f"max_eval_examples={args.max_eval}"]


def compare_with_trainer(args: argparse.Namespace, out: Path) -> dict:
    """Part 1: alternate HF Trainer and mtl_nlp single-task runs; medians and their ratio per task.

    CoNLL-2003 is the headline and runs `--repeats` pairs; SST-2 and AG News run one pair each,
    which already takes most of an hour on 2 cores.
    """
    comparison = {}
    for task in TASKS:
        metric, runs = get_task(task).main_metric, []
        for index in range(args.repeats if task == "conll2003" else 1):
            hf = hf_trainer_arm(task, args, out / f"hf_trainer_{task}_{index}.json")
            ours = mtl_arm([task], args, out / f"stl_{task}_{index}")
            runs.append({"hf_trainer": hf, "mtl_nlp": ours,
                         "ratio": ours["real_tokens_per_second"] / hf["real_tokens_per_second"]})
            print(f"  {task} run {index}: HF {hf['real_tokens_per_second']:.0f} tok/s "
                  f"{metric} {hf['test'][metric]:.4f} | mtl_nlp {ours['real_tokens_per_second']:.0f} tok/s "
                  f"{metric} {ours['test'][task][metric]:.4f}", flush=True)
        hf_rate = statistics.median(r["hf_trainer"]["real_tokens_per_second"] for r in runs)
        our_rate = statistics.median(r["mtl_nlp"]["real_tokens_per_second"] for r in runs)
        comparison[task] = {
            "metric": metric,
            "runs": runs,
            "hf_trainer_tokens_per_second": hf_rate,
            "mtl_nlp_tokens_per_second": our_rate,
            "ratio_of_medians": our_rate / hf_rate,
            "hf_trainer_score": statistics.median(r["hf_trainer"]["test"][metric] for r in runs),
            "mtl_nlp_score": statistics.median(r["mtl_nlp"]["test"][task][metric] for r in runs),
            "hf_trainer_padding": runs[-1]["hf_trainer"]["padding_fraction"],
            "mtl_nlp_padding": runs[-1]["mtl_nlp"]["padding_fraction"],
        }
    return comparison


def compare_mtl_stl(args: argparse.Namespace, out: Path, single: dict[str, dict]) -> dict:
    """Part 2: the three tasks jointly vs one run per task (the single-task runs come from part 1)."""
    joint = mtl_arm(TASKS, args, out / "mtl_all")
    per_task = {}
    for task in TASKS:
        metric = get_task(task).main_metric
        mtl_score, stl_score = joint["test"][task][metric], single[task]["test"][task][metric]
        per_task[task] = {"metric": metric, "mtl": mtl_score, "stl": stl_score,
                          "mtl_minus_stl": mtl_score - stl_score}
    return {
        "per_task": per_task,
        "mtl": {k: joint[k] for k in ("wall_seconds", "train_seconds", "padding_fraction", "peak_memory_mb",
                                       "real_tokens_per_second")},
        "stl": {
            "wall_seconds": sum(s["wall_seconds"] for s in single.values()),
            "train_seconds": sum(s["train_seconds"] for s in single.values()),
            "padding_fraction": {t: s["padding_fraction"] for t, s in single.items()},
            "peak_memory_mb": max(s["peak_memory_mb"] for s in single.values()),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="train on subsets (a few minutes)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(ROOT / "outputs" / "benchmark"))
    parser.add_argument("--repeats", type=int,
                        help="CoNLL-2003 HF Trainer / mtl_nlp pairs in part 1 (default 3)")
    parser.add_argument("--max-train", type=int, default=2000, help="--quick: train examples per task")
    parser.add_argument("--max-eval", type=int, default=1000, help="--quick: eval examples per task")
    parser.add_argument("--texts", type=int, help="inference texts (500 quick, 2000 full)")
    args = parser.parse_args()
    if not (Path(args.data_dir) / "conll2003").is_dir():
        print(f"benchmark skipped: no benchmark data at {args.data_dir} (see ../shared/data/README.md)")
        return
    args.repeats = args.repeats or 3
    texts = args.texts or (500 if args.quick else 2000)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"mode": "quick" if args.quick else "full", "repeats": args.repeats}

    print("1. single task: HF Trainer vs mtl_nlp", flush=True)
    report["trainer_comparison"] = compare_with_trainer(args, out)
    print("2. multi-task vs single-task", flush=True)
    last_runs = {task: len(c["runs"]) - 1 for task, c in report["trainer_comparison"].items()}
    single = {task: report["trainer_comparison"][task]["runs"][i]["mtl_nlp"] for task, i in last_runs.items()}
    report["mtl_vs_stl"] = compare_mtl_stl(args, out, single)
    print("3. inference", flush=True)
    report["inference"] = compare_inference(
        out / "mtl_all", [out / f"stl_{task}_{i}" for task, i in last_runs.items()],
        benchmark_texts(TASKS, args.data_dir, texts),
    )
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report))


def summary(report: dict) -> str:
    """A markdown summary of the report."""
    t, m, i = report["trainer_comparison"], report["mtl_vs_stl"], report["inference"]
    lines = [
        f"mode {report['mode']}; medians of {report['repeats']} HF/mtl_nlp run pair(s) for CoNLL-2003, "
        "1 pair for the others",
        "| task, 1 epoch | metric | HF tokens/s | mtl_nlp tokens/s | ratio | HF padding | mtl_nlp padding "
        "| HF score | mtl_nlp score |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, row in t.items():
        lines.append(
            f"| {task} | {row['metric']} | {row['hf_trainer_tokens_per_second']:.0f} | "
            f"{row['mtl_nlp_tokens_per_second']:.0f} | {row['ratio_of_medians']:.2f}x | "
            f"{row['hf_trainer_padding']:.1%} | {row['mtl_nlp_padding']:.1%} | "
            f"{row['hf_trainer_score']:.4f} | {row['mtl_nlp_score']:.4f} |")
    lines += [
        "",
        "| task | metric | MTL | STL | MTL - STL |",
        "|---|---|---|---|---|",
    ]
    for task, row in m["per_task"].items():
        lines.append(f"| {task} | {row['metric']} | {row['mtl']:.4f} | {row['stl']:.4f} | "
                     f"{row['mtl_minus_stl']:+.4f} |")
    lines += [
        f"MTL: wall {m['mtl']['wall_seconds']:.0f}s, train {m['mtl']['train_seconds']:.0f}s, padding "
        f"{m['mtl']['padding_fraction']:.1%}, peak memory {m['mtl']['peak_memory_mb']:.0f} MB",
        f"STL (3 runs): wall {m['stl']['wall_seconds']:.0f}s, train {m['stl']['train_seconds']:.0f}s, "
        f"peak memory {m['stl']['peak_memory_mb']:.0f} MB",
        "",
        f"inference, {i['sentences']} texts, median of {i['repeats']}: multi-task Predictor "
        f"{i['multitask_sentences_per_second']:.0f} sentences/s (all 3 tasks), three single-task "
        f"Predictors {i['single_task_sentences_per_second']:.0f} sentences/s; {i['speedup']:.2f}x",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
