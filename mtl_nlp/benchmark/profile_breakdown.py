"""Where the training loop spends its time, from a py-spy profile of a recipe run.

    py-spy record -r 40 -f raw -o prof.txt -- python recipes/cls_ner.py ...
    python -m mtl_nlp.benchmark.profile_breakdown prof.txt

py-spy's raw format is one collapsed stack per line ("outer;...;inner COUNT", frames written as
"function (file:line)"). Samples under `MultiTaskTrainer.train` are put into the phases below;
the toolkit's overhead is everything in a step that is not the model's forward, backward and
optimizer work (data loading, sampling, collation, logging, bookkeeping).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

TRAIN_LOOP = ".train (mtl_nlp/training/trainer.py"
EVALUATION = ".evaluate_and_checkpoint ("
MODEL_WORK = ("forward", "backward", "optimizer", "gradient clipping", "scheduler")

# Inside one training step: the first rule whose marker appears in the stack names the phase.
STEP_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("backward", ("backward (",)),
    ("gradient clipping", ("clip_grad_norm_ (",)),
    ("optimizer", ("torch/optim/", "accelerate/optimizer.py", "zero_grad (")),
    ("scheduler", ("lr_scheduler.py", "accelerate/scheduler.py")),
    ("forward", ("forward (", "_call_impl (")),
    ("device transfer", ("send_to_device (",)),
]
# Between steps: fetching the next batch, and the progress bar.
LOOP_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("collation", ("collat", "pad (")),
    ("sampling and batching", ("mtl_nlp/data/sampling.py", "mtl_nlp/data/batching.py")),
    ("data loading", ("__next__ (", "__iter__ (")),
    ("logging", ("tqdm/", "postfix (")),
]


def parse_raw(lines: Iterable[str]) -> Counter[tuple[str, ...]]:
    """{stack (outermost frame first): samples} from py-spy raw output."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def phase_of(stack: tuple[str, ...]) -> str | None:
    """The training phase of one stack, or None when it is outside the training loop."""
    start = next((i for i, frame in enumerate(stack) if TRAIN_LOOP in frame), None)
    if start is None:
        return None
    inner = stack[start + 1 :]
    if any(EVALUATION in frame for frame in inner):
        return "evaluation and checkpoints"
    in_step = any("._train_batch (" in frame for frame in inner)
    for phase, markers in STEP_RULES if in_step else LOOP_RULES:
        if any(marker in frame for frame in inner for marker in markers):
            return phase
    return "step bookkeeping" if in_step else "loop bookkeeping"


def breakdown(stacks: Counter[tuple[str, ...]]) -> dict[str, object]:
    """Samples per phase, each phase's share of training-step time, and the toolkit overhead."""
    phases: Counter[str] = Counter()
    for stack, count in stacks.items():
        phases[phase_of(stack) or "outside the training loop"] += count
    step_phases = {p: n for p, n in phases.items()
                   if p not in ("outside the training loop", "evaluation and checkpoints")}
    step_total = sum(step_phases.values())
    if not step_total:
        raise ValueError(f"no samples of training steps (under {TRAIN_LOOP.strip('.')}...); "
                         "record the whole run with py-spy -f raw")
    overhead = sum(n for p, n in step_phases.items() if p not in MODEL_WORK)
    return {
        "samples": dict(phases.most_common()),
        "share_of_step_time": {p: n / step_total for p, n in Counter(step_phases).most_common()},
        "toolkit_overhead": overhead / step_total,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="py-spy output recorded with -f raw")
    args = parser.parse_args(argv)
    if not Path(args.profile).is_file():
        parser.error(f"profile not found: {args.profile}")
    result = breakdown(parse_raw(Path(args.profile).read_text().splitlines()))
    print(f"samples: {result['samples']}")
    for phase, share in result["share_of_step_time"].items():
        print(f"  {phase:<24} {share:6.1%} of training-step time")
    print(f"toolkit overhead: {result['toolkit_overhead']:.1%} of training-step time")


if __name__ == "__main__":
    main()
