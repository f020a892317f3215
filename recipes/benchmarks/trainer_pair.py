"""One task trained alone by the HF Trainer and by mtl_nlp, in alternating fresh processes, with the
same settings (encoder, max length, stride, epochs, batch size, learning rate, seed, data limits);
useful tokens/s of each, their ratio, and both test scores.

    python -m recipes.benchmarks.trainer_pair --task squad --data-dir ../shared/data \
        --max-length 384 --stride 128 --epochs 2 --max-train-examples 4000 --pairs 1
    python -m recipes.benchmarks.trainer_pair --task commonsense_qa --data-dir ../shared/data \
        --max-length 128 --epochs 2 --max-train-examples 4000
    python -m recipes.benchmarks.trainer_pair --task commonsense_qa ... --mtl-overrides \
        train.sort_window=1 --tag random_batches     # another mtl_nlp arm against the same HF runs

The HF Trainer arm is recipes.benchmarks.hf_baseline: transformers' example-recipe model
(`*ForQuestionAnswering`, `*ForMultipleChoice`, ...) on the very features mtl_nlp builds (for
extractive QA run_qa's windows and post-processing, for multiple choice run_swag's rows). Results
accumulate in OUT (one JSON file per arm and pair), so a cut-off run goes on where it stopped.
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

from mtl_nlp.reports.run_results import read_metrics, read_trainer_state

ROOT = Path(__file__).resolve().parents[2]


def run(command: list[str]) -> float:
    """Run one arm in its own process; its wall seconds."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"arm failed: {' '.join(command)}\n{result.stderr[-4000:]}")
    return round(time.perf_counter() - started, 1)


def hf_trainer(args: argparse.Namespace, seed: int, out: Path) -> dict:
    """The HF Trainer arm: throughput, padding, memory and test scores."""
    command = [sys.executable, "-m", "recipes.benchmarks.hf_baseline", "--task", args.task,
               "--data-dir", args.data_dir, "--out", str(out), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(seed),
               "--max-length", str(args.max_length), *limit_flags(args)]
    if args.stride is not None:
        command += ["--stride", str(args.stride)]
    wall = run(command)
    return {**json.loads(out.read_text()), "wall_seconds": wall}


def mtl_nlp(args: argparse.Namespace, seed: int, output_dir: Path) -> dict:
    """The mtl_nlp arm (`mtl-nlp train` with the task alone): the same figures from its run files."""
    shutil.rmtree(output_dir, ignore_errors=True)
    command = [sys.executable, "-m", "mtl_nlp.cli", "train", f"tasks=[{args.task}]",
               f"data_dir={args.data_dir}", f"output_dir={output_dir}", f"seed={seed}",
               f"max_length={args.max_length}", f"train.epochs={args.epochs}",
               f"train.batch_size={args.batch_size}", f"train.lr={args.lr}", *limit_overrides(args),
               *args.mtl_overrides]
    if args.stride is not None:
        command.append(f"stride={args.stride}")
    wall = run(command)
    state = read_trainer_state(output_dir)
    shutil.rmtree(output_dir / "state", ignore_errors=True)  # resume state: not needed once finished
    return {**{key: value for key, value in state.items() if "history" not in key},
            "test": read_metrics(output_dir)[args.task], "wall_seconds": wall}


LIMITS = ("max_train_examples", "max_eval_examples")


def limit_flags(args: argparse.Namespace) -> list[str]:
    """The data limits that are set, as hf_baseline's flags."""
    return [item for name in LIMITS if getattr(args, name) is not None
            for item in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]


def limit_overrides(args: argparse.Namespace) -> list[str]:
    """The data limits that are set, as mtl-nlp config overrides."""
    return [f"{name}={getattr(args, name)}" for name in LIMITS if getattr(args, name) is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--pairs", type=int, default=1, help="HF Trainer / mtl_nlp pairs, alternating")
    parser.add_argument("--seed", type=int, default=42, help="seed of the first pair (pair k: seed + k)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int)
    parser.add_argument("--max-train-examples", type=int)
    parser.add_argument("--max-eval-examples", type=int)
    parser.add_argument("--out", default=str(ROOT / "outputs" / "trainer_pair"))
    parser.add_argument("--mtl-overrides", nargs="*", default=[],
                        help="config overrides of the mtl_nlp arm only (KEY=VALUE ...)")
    parser.add_argument("--tag", default="", help="names the mtl_nlp arm's results when it has overrides")
    args = parser.parse_args()
    out = Path(args.out) / args.task
    out.mkdir(parents=True, exist_ok=True)
    if args.mtl_overrides and not args.tag:
        parser.error("--mtl-overrides needs --tag, so that its results do not mix with the plain arm's")
    tag = f"_{args.tag}" if args.tag else ""
    rows = []
    for index in range(args.pairs):
        seed = args.seed + index
        arms = {}
        for arm, runner, target in (("hf_trainer", hf_trainer, out / f"hf_trainer_{seed}.json"),
                                    ("mtl_nlp", mtl_nlp, out / f"mtl_nlp{tag}_{seed}")):
            done = out / f"{arm}{tag if arm == 'mtl_nlp' else ''}_{seed}_result.json"
            if not done.exists():
                print(f"running {args.task} {arm} seed {seed}", flush=True)
                done.write_text(json.dumps({"settings": vars(args), **runner(args, seed, target)}, indent=2))
            arms[arm] = json.loads(done.read_text())
        rows.append(arms)
    print(pair_table(args.task, rows))


def pair_table(task: str, rows: list[dict]) -> str:
    """A markdown table of the pairs: tokens/s of each arm, their ratio and every test metric."""
    metrics = sorted(rows[0]["mtl_nlp"]["test"])
    lines = [f"| {task} pair | HF Trainer tokens/s | mtl_nlp tokens/s | ratio | "
             + " | ".join(f"HF {name} | mtl_nlp {name}" for name in metrics) + " |",
             "|---" * (4 + 2 * len(metrics)) + "|"]
    for index, arms in enumerate(rows):
        hf, ours = arms["hf_trainer"], arms["mtl_nlp"]
        hf_rate, our_rate = hf["real_tokens_per_second"], ours["real_tokens_per_second"]
        scores = " | ".join(f"{hf['test'][name]:.4f} | {ours['test'][name]:.4f}" for name in metrics)
        row = f"| {index + 1} | {hf_rate:.0f} | {our_rate:.0f} | {our_rate / hf_rate:.2f} | {scores} |"
        lines.append(row)
    ratios = [arms["mtl_nlp"]["real_tokens_per_second"] / arms["hf_trainer"]["real_tokens_per_second"]
              for arms in rows]
    lines.append(f"\nmedian tokens/s ratio over {len(rows)} pair(s): {statistics.median(ratios):.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
