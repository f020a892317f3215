"""Where the training loop spends its time, from a py-spy profile of a recipe run.

    py-spy record -r 40 -f raw -o prof.txt -- python recipes/cls_ner.py ...
    python -m recipes.benchmarks.profile_breakdown prof.txt

py-spy's raw format is one collapsed stack per line ("outer;...;inner COUNT", frames written as
"function (file:line)"). Samples under `MultiTaskTrainer.train` are put into the phases below:
fetching batches (in `StepRunner.run`, which draws each step's batches, or between steps), the
model's work inside a step, evaluation, and logging;
the toolkit's overhead is everything in a step that is not the model's forward, backward and
optimizer work (data loading, sampling, collation, logging, bookkeeping).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# (function, file) of the frames that open the training loop, one optimizer step (which also
# fetches the step's batches) and an evaluation. py-spy writes a frame as "function (file:line)",
# with the class in front ("StepRunner.run") where Python gives the qualified name.
TRAIN_LOOP = ("train", "mtl_nlp/training/trainer.py")
OPTIMIZER_STEP = ("run", "mtl_nlp/training/step.py")
EVALUATION = ("evaluate_and_checkpoint", "mtl_nlp/training/trainer.py")
MODEL_WORK = ("forward", "backward", "optimizer", "gradient clipping", "scheduler")

# A stack that fetches batches (inside a step, which draws its own, or between steps) holds one of
# these; the first rule whose marker appears then names the kind of work, else "data loading".
FETCHING = ("mtl_nlp/data/", "torch/utils/data/", "__next__ (")
DATA_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("collation", ("collat", "pad (")),
    ("sampling and batching", ("mtl_nlp/data/sampling.py", "mtl_nlp/data/batching.py")),
]
# The rest of a training step.
# A marker "name()" matches a frame of that function (plain or qualified): "backward()" is
# autograd's backward, not StepRunner._forward_backward; other markers match as substrings.
STEP_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("backward", ("backward()",)),
    ("gradient clipping", ("clip_grad_norm_ (",)),
    ("optimizer", ("torch/optim/", "accelerate/optimizer.py", "zero_grad (")),
    ("scheduler", ("lr_scheduler.py", "accelerate/scheduler.py")),
    ("forward", ("forward (", "_call_impl (")),
    ("device transfer", ("send_to_device (",)),
]
# Between steps: the progress bar and the loop's own logging.
LOOP_RULES: list[tuple[str, tuple[str, ...]]] = [("logging", ("tqdm/", "postfix (", "_log_losses ("))]


def is_frame(frame: str, function: str, file: str) -> bool:
    """Whether a py-spy frame is `function` (plain or qualified) of `file`."""
    name, _, location = frame.partition(" (")
    return name.rpartition(".")[2] == function and file in location


def matches(frame: str, marker: str) -> bool:
    if marker.endswith("()"):
        return frame.partition(" (")[0].rpartition(".")[2] == marker[:-2]
    return marker in frame


def first_match(inner: tuple[str, ...], rules: list[tuple[str, tuple[str, ...]]]) -> str | None:
    return next((phase for phase, markers in rules
                 if any(matches(frame, marker) for frame in inner for marker in markers)), None)


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
    start = next((i for i, frame in enumerate(stack) if is_frame(frame, *TRAIN_LOOP)), None)
    if start is None:
        return None
    inner = stack[start + 1 :]
    if any(is_frame(frame, *EVALUATION) for frame in inner):
        return "evaluation and checkpoints"
    if any(marker in frame for frame in inner for marker in FETCHING):
        return first_match(inner, DATA_RULES) or "data loading"
    if any(is_frame(frame, *OPTIMIZER_STEP) for frame in inner):
        return first_match(inner, STEP_RULES) or "step bookkeeping"
    return first_match(inner, LOOP_RULES) or "loop bookkeeping"


def breakdown(stacks: Counter[tuple[str, ...]]) -> dict[str, object]:
    """Samples per phase, each phase's share of training-step time, and the toolkit overhead."""
    phases: Counter[str] = Counter()
    for stack, count in stacks.items():
        phases[phase_of(stack) or "outside the training loop"] += count
    step_phases = {p: n for p, n in phases.items()
                   if p not in ("outside the training loop", "evaluation and checkpoints")}
    step_total = sum(step_phases.values())
    if not step_total:
        raise ValueError(f"no samples of training steps (under {TRAIN_LOOP[0]} in {TRAIN_LOOP[1]}); "
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
