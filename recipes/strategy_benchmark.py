"""Compare multi-task strategies with single-task training on real data, several seeds each.

    python recipes/strategy_benchmark.py --grid sweep            # scaled-down mixes, sweeps
    python recipes/strategy_benchmark.py --grid final            # whole training sets
    python recipes/strategy_benchmark.py --grid sweep --summary  # tables from what has run

An arm is a task mix plus config overrides; every arm runs once per seed, each run in a fresh
process of recipes/cls_ner.py (bf16 where the machine has it, the default encoder, 1 epoch unless
the arm says otherwise). Results accumulate in OUT/results.json, so an interrupted benchmark
continues where it stopped; while OUT/PAUSE exists no new run starts (the one under way ends
first), so a test suite can run without two heavy jobs sharing the cores. The summary gives
each task's test main metric as mean ± std over the seeds, the mean gain over the single-task
arms with the same seeds (delta), wall time and seconds per optimizer step.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from benchmarks.strategy_tables import strategy_tables

from mtl_nlp.reports.run_results import read_metrics, read_trainer_state

ROOT = Path(__file__).resolve().parent.parent
ATIS_FILES = {"train": "atis/train.jsonl", "validation": "atis/valid.jsonl", "test": "atis/test.jsonl"}
CONLL_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
# Inline entries equal to the built-in tasks, reading data_dir, so each may take its own
# max_train_examples and layer (under their own names: an entry may not redefine a built-in).
LOCAL = {
    "conll2003": {"type": "token_classification", "format": "conll", "tags_column": "ner_tags",
                  "labels": CONLL_TAGS, "data_files": {"train": "conll2003/train.txt",
                  "validation": "conll2003/valid.txt", "test": "conll2003/test.txt"}},
    "sst2": {"type": "classification", "format": "tsv", "text_column": "sentence",
             "labels": ["negative", "positive"], "data_files": {"train": "sst2/train.tsv",
             "validation": "sst2/dev.tsv", "test": "sst2/test.tsv"}},
    "ag_news": {"type": "classification", "format": "tsv",
                "labels": ["World", "Sports", "Business", "Sci/Tech"],
                "data_files": {"train": "ag_news/train.tsv", "test": "ag_news/test.tsv"}},
    # Many-class intents: 77 banking intents, and ATIS's intents (whose test split holds 5
    # utterances with intents never seen in training, scored as errors).
    "banking77": {"type": "classification", "format": "tsv",
                  "data_files": {"train": "banking77/train.tsv", "test": "banking77/test.tsv"}},
    "atis_intent": {"type": "classification", "format": "json", "label_column": "intent",
                    "data_files": ATIS_FILES},
    "atis_slots": {"type": "token_classification", "format": "json", "data_files": ATIS_FILES},
    # Extractive QA (SQuADShifts to train, SQuAD v1.1 dev to test) and CommonsenseQA.
    "squad": {"type": "extractive_qa", "format": "json",
              "data_files": {"train": "qa/train.jsonl", "test": "qa/test.jsonl"}},
    "commonsenseqa": {"type": "multiple_choice", "format": "json",
                      "data_files": {"train": "commonsenseqa/train.jsonl",
                                     "test": "commonsenseqa/test.jsonl"}},
    # One entry, two heads named as the two single tasks, so the tables line them up.
    "atis_joint": {"format": "json", "data_files": ATIS_FILES, "heads": [
        {"name": "atis_intent", "type": "classification", "label_column": "intent"},
        {"name": "atis_slots", "type": "token_classification"}]},
}

NAMES = {"conll2003": "conll", "sst2": "sst", "ag_news": "agnews", "banking77": "banking77",
         "squad": "squad", "commonsenseqa": "csqa",
         "atis_intent": "atis_intent", "atis_slots": "atis_slots", "atis_joint": "atis"}

# Mixes: {task: training examples (None = all)}. "scaled" keeps the full mix's proportions at a
# fifth of its size; "small_ner" is a small NER task beside two larger classification tasks,
# trained for 2 epochs (EPOCHS), the shape of mix where naive multi-task training hurts NER.
MIXES = {
    "full": {"conll2003": None, "sst2": None, "ag_news": None},
    "scaled": {"conll2003": 2800, "sst2": 13470, "ag_news": 2000},
    "small_ner": {"conll2003": 3000, "sst2": 13470, "ag_news": 5000},
    # A small NER task beside two many-class intent tasks: the shape of mix where the recipe's
    # defaults cost the intent tasks accuracy (1 epoch).
    "intent": {"conll2003": 3000, "banking77": None, "atis_intent": None},
    "banking77_only": {"banking77": None},
    # ATIS intents and slots as two entries, or as one entry with two heads (entries=atis_joint).
    "atis": {"atis_intent": None, "atis_slots": None},
    "atis_joint": {"atis_joint": None},
    # A question task beside a small NER task and sentiment (the mixes).
    "qa_mix": {"squad": 4000, "conll2003": 3000, "sst2": 4000},
    "mc_mix": {"commonsenseqa": None, "conll2003": 3000, "sst2": 4000},
}
EPOCHS_BY_GRID = {"atis": 3, "intent_3_epochs": 3, "shared_3_epochs": 3, "questions": 2}
EPOCHS = {"small_ner": 2}
# Every sweep arm (single-task runs included) starts from this baseline and changes one lever,
# so a change of the library's defaults does not change what an arm measured.
BASELINE = ["sampling.strategy=proportional", "weighting.method=equal", "train.step_mode=one_task",
            "sharing.private_layers=0", "train.lr=5e-5", "sampling.temperature=2"]
GRIDS = {
    "sweep": {
        "lr_2e-5": ("scaled", ["train.lr=2e-5"]),
        "lr_5e-5": ("scaled", []),
        "lr_1e-4": ("scaled", ["train.lr=1e-4"]),
        "temperature": ("scaled", ["sampling.strategy=temperature"]),
        "annealed": ("scaled", ["sampling.strategy=annealed"]),
        "proportional_cap": ("scaled", ["sampling.cap=3000"]),
        "annealed_cap": ("scaled", ["sampling.strategy=annealed", "sampling.cap=3000"]),
        "uncertainty": ("scaled", ["weighting.method=uncertainty"]),
        "dwa": ("scaled", ["weighting.method=dwa"]),
        "pcgrad": ("scaled", ["weighting.method=pcgrad", "train.step_mode=all_tasks"]),
        "private_2": ("scaled", ["sharing.private_layers=2"]),
        "hierarchical": ("scaled", ["tasks.conll2003.layer=3"]),
        # Sentence heads that export to transformers (first token -> dense + tanh) vs mean pooling.
        "pooler_heads": ("scaled", ["tasks.sst2.pooling=pooler", "tasks.ag_news.pooling=pooler"]),
        "small_ner_default": ("small_ner", []),
        "small_ner_temperature": ("small_ner", ["sampling.strategy=temperature"]),
        "small_ner_uniform": ("small_ner", ["sampling.strategy=uniform"]),
        "small_ner_temperature_lr_1e-4": ("small_ner", ["sampling.strategy=temperature", "train.lr=1e-4"]),
    },
    # The library's defaults (RunConfig) on the many-class intent mix, single-task runs alike.
    "intent": {
        "intent_defaults": ("intent", []),
        # Each task drawn as often as its size says: the large intent task gets the batches it
        # gets alone (temperature sampling gives it fewer in the same run length).
        "intent_proportional": ("intent", ["sampling.strategy=proportional"]),
        # Temperature sampling with a run long enough that every task gets the batches it gets
        # alone (train.epoch=each_task: 668 steps here against 531).
        "intent_each_task": ("intent", ["train.epoch=each_task"]),
        # Each task's own top 2 layers: banking77 still loses with its batches and its gradients'
        # size matched (each_task; the intent_normalized grid), so give it layers of its own.
        "intent_private_2": ("intent", ["sharing.private_layers=2"]),
        # Each task taught by its single-task run of the same seed (teacher annealing).
        "intent_distilled": ("intent", ["teachers=single"]),
        # Layer-wise learning-rate decay 0.9, alone and with the teachers (the GLUE subset's best arms).
        "intent_decay": ("intent", ["train.layer_lr_decay=0.9"]),
        "intent_distilled_decay": ("intent", ["teachers=single", "train.layer_lr_decay=0.9"]),
        # teachers sharpened: after 1 epoch the 77-way teacher's top probability averages 0.12
        "intent_distilled_t0.25": ("intent", ["teachers=single", "distill.temperature=0.25"]),
        # Per-task capacity from LoRA adapters (the GLUE benchmark's adapter rate): on a frozen
        # encoder, and with the shared encoder trained beside them.
        "intent_lora": ("intent", ["sharing.adapters.method=lora", "sharing.adapters.lr=5e-4"]),
        "intent_lora_base": ("intent", ["sharing.adapters.method=lora", "sharing.adapters.lr=5e-4",
                                        "sharing.adapters.train_base=true"]),
    },
    # The intent mix with each step's encoder gradient scaled to one norm (single-task runs alike):
    # at the start banking77's encoder gradient is 15x smaller than CoNLL-2003's, so beside it the
    # 77-way task takes small steps through Adam's shared moments.
    "intent_normalized": {
        "intent_normalized": ("intent", []),
    },
    # The intent mix at the library's own length (RunConfig: 3 epochs), single-task runs alike.
    "intent_3_epochs": {
        "intent_defaults_3_epochs": ("intent", []),
        "intent_distilled_decay_3_epochs": ("intent", ["teachers=single", "train.layer_lr_decay=0.9"]),
        # the teachers without the decay: at 1 epoch their soft 77-way outputs slowed banking77
        "intent_distilled_3_epochs": ("intent", ["teachers=single"]),
        # only the task the one model loses taught: the others keep what the mix gives them
        "intent_distilled_banking77_3_epochs": ("intent", ["teachers=single:banking77"]),
    },
    # The shared mix (CoNLL-2003, SST-2, AG News at the scaled sizes) under the library's defaults
    # for RunConfig's 3 epochs: does a task taught by its single-task run keep what the mix gives?
    "shared_3_epochs": {
        "shared_defaults_3_epochs": ("scaled", []),
        "shared_decay_3_epochs": ("scaled", ["train.layer_lr_decay=0.9"]),
        "shared_distilled_decay_3_epochs": ("scaled", ["teachers=single", "train.layer_lr_decay=0.9"]),
    },
    # banking77 alone for 6 epochs: about the banking77 batches of the 3-epoch multi-task run and
    # its finetune stage together (730 + 891), the compute-matched single-task baseline.
    "intent_6_epochs_banking77": {
        "banking77_6_epochs": ("banking77_only", ["train.epochs=6"]),
    },
    # Joint NLU: one entry with an intent and a slot head (one encoder pass) against two entries
    # and against the two single-task models, 3 epochs each.
    "atis": {
        "atis_two_entries": ("atis", []),
        "atis_one_entry": ("atis", ["entries=atis_joint"]),
        # The same compute as the two single-task models together (840 steps): one entry trains
        # both heads on each batch, so at 3 epochs it takes half their optimizer steps.
        "atis_one_entry_6_epochs": ("atis", ["entries=atis_joint", "train.epochs=6"]),
        # The entry with each head taught by its single-task model of the same seed, at their epochs.
        "atis_one_entry_distilled": ("atis", ["entries=atis_joint", "teachers=single"]),
        # Private top layers per task: the intent head loses beside the slot tagger with the whole
        # encoder shared, in one entry or in two.
        "atis_two_entries_private_2": ("atis", ["sharing.private_layers=2"]),
        "atis_one_entry_private_2": ("atis", ["entries=atis_joint", "sharing.private_layers=2"]),
    },
    # Extractive QA and multiple choice, single-task (the mix's single arms) and in a mix, every
    # run at transformers' run_qa lengths (GRID_BASE: 384 tokens, windows sharing 128).
    "questions": {
        "qa_mix": ("qa_mix", []),
        "mc_mix": ("mc_mix", []),
    },
    "final": {
        "recipe_config": ("full", ["--config", "recipes/configs/conll_sst2_agnews.yaml"]),
        "recipe_config_proportional": ("full", ["--config", "recipes/configs/conll_sst2_agnews.yaml",
                                                "sampling.strategy=proportional"]),
        # Half the batches of the three single-task runs together: the time target.
        "recipe_config_half_epoch": ("full", ["--config", "recipes/configs/conll_sst2_agnews.yaml",
                                              "train.epochs=0.5"]),
        # The same budget with twice the learning rate: fewer steps need larger ones.
        "recipe_config_half_epoch_lr_1e-4": ("full", ["--config", "recipes/configs/conll_sst2_agnews.yaml",
                                                      "train.epochs=0.5", "train.lr=1e-4"]),
        # The half-time budget with larger steps, or with SST-2 (the task short of batches in half
        # an epoch) drawn as often as its size says instead of by temperature.
        "recipe_config_half_epoch_lr_2e-4": ("full", ["--config", "recipes/configs/conll_sst2_agnews.yaml",
                                                      "train.epochs=0.5", "train.lr=2e-4"]),
        "recipe_config_half_epoch_lr_1e-4_proportional": (
            "full", ["--config", "recipes/configs/conll_sst2_agnews.yaml", "train.epochs=0.5",
                     "train.lr=1e-4", "sampling.strategy=proportional"]),
        # Token-budget batches: a batch of short SST-2 sentences carries several times the rows of
        # an AG News batch, larger batches use the cores better, and proportional sampling over
        # such batches gives each task about its share of the tokens.
        "recipe_config_0.6_epoch_tokens_2048_proportional_lr_2e-4": (
            "full", ["--config", "recipes/configs/conll_sst2_agnews.yaml", "train.epochs=0.6",
                     "train.max_tokens=2048", "sampling.strategy=proportional", "train.lr=2e-4"]),
        "recipe_config_0.6_epoch_tokens_1024_proportional_lr_2e-4": (
            "full", ["--config", "recipes/configs/conll_sst2_agnews.yaml", "train.epochs=0.6",
                     "train.max_tokens=1024", "sampling.strategy=proportional", "train.lr=2e-4"]),
        "recipe_config_0.6_epoch_tokens_1024_lr_2e-4": (
            "full", ["--config", "recipes/configs/conll_sst2_agnews.yaml", "train.epochs=0.6",
                     "train.max_tokens=1024", "train.lr=2e-4"]),
        # Levers for a task that trails its single-task run on the whole data (SST-2): end the run
        # on proportional sampling (exponent 1/T -> 1), or train longer.
        "recipe_config_anneal_down": ("full", ["--config", "recipes/configs/conll_sst2_agnews.yaml",
                                               "sampling.strategy=annealed", "sampling.anneal=down"]),
        "recipe_config_1.5_epochs": ("full", ["--config", "recipes/configs/conll_sst2_agnews.yaml",
                                              "train.epochs=1.5"]),
        # Two more levers for SST-2: twice the learning rate (best on the scaled sweep), and
        # private top layers so the sentence tasks stop sharing the layers their heads read.
        "recipe_config_lr_1e-4": ("full", ["--config", "recipes/configs/conll_sst2_agnews.yaml",
                                           "train.lr=1e-4"]),
        "recipe_config_private_2": ("full", ["--config", "recipes/configs/conll_sst2_agnews.yaml",
                                             "sharing.private_layers=2"]),
    },
}
SINGLE_TASK = "single"  # the arm name prefix of single-task runs
GRID_BASE = {"sweep": BASELINE, "intent": [], "intent_3_epochs": [], "shared_3_epochs": [],
             "questions": ["max_length=384", "stride=128"],
             "intent_normalized": ["train.grad_norm_mode=normalize"]}  # what every run starts from


TASK_FIELDS = {"layer": int, "pooling": str}  # what `tasks.NAME.FIELD=VALUE` may set


def task_entries(mix: str, data_dir: Path, fields: dict[str, dict]) -> list[dict]:
    """Inline task entries reading the local copies, limited to the mix's training sizes, with
    the arm's per-task fields (`fields`: {MIXES task: {field: value}})."""
    entries = []
    for task, limit in MIXES[mix].items():
        entry = {"name": NAMES[task], **LOCAL[task]}
        entry["data_files"] = {split: str(data_dir / path) for split, path in entry["data_files"].items()}
        if limit is not None:
            entry["max_train_examples"] = limit
        entry.update(fields.get(task, {}))
        entries.append(entry)
    return entries


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, dict], list[str], str | None,
                                                  list[str] | None]:
    """(config overrides, per-task fields from `tasks.NAME.FIELD=VALUE`, extra CLI args, the mix
    whose entries the arm trains instead of its own mix's, from `entries=MIX`, and the tasks (MIXES
    keys) that learn from their single-task run of the seed: every task with `teachers=single`,
    those listed with `teachers=single:TASK,TASK`, None without)."""
    plain, fields, extra, entries, taught = [], {}, [], None, None
    items = iter(overrides)
    for item in items:
        if item == "--config":
            extra += [item, next(items)]
        elif item.startswith("teachers=single"):
            taught = item.partition(":")[2].split(",") if ":" in item else []
        elif item.startswith("entries="):
            entries = item.partition("=")[2]
        elif item.startswith("tasks.") and item.count(".") == 2:
            _, task, rest = item.split(".")
            key, value = rest.split("=")
            if key not in TASK_FIELDS:
                raise ValueError(f"tasks.NAME.FIELD takes FIELD in {sorted(TASK_FIELDS)}, got {item}")
            fields.setdefault(task, {})[key] = TASK_FIELDS[key](value)  # task: a MIXES key
        else:
            plain.append(item)
    return plain, fields, extra, entries, taught


def run_arm(name: str, mix: str, overrides: list[str], seed: int, tasks: list[str] | None,
            args: argparse.Namespace, out: Path) -> dict:
    """One recipe run in a fresh process; returns its test metrics, wall time and steps."""
    plain, fields, extra, entries_mix, taught = split_overrides(overrides)
    if taught is not None:  # the mix's single-task runs of this seed (run before the arms) teach
        plain += [f"distill.teachers.{NAMES[task]}={out / 'runs' / f'{SINGLE_TASK}_{mix}_{task}-seed{seed}'}"
                  for task in taught or MIXES[mix]]
    entries = [e for e in task_entries(entries_mix or mix, Path(args.data_dir).resolve(), fields)
               if tasks is None or e["name"] in {NAMES[task] for task in tasks}]
    run_dir = out / "runs" / f"{name}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a run cut off earlier starts over
    config = run_dir.with_suffix(".yaml")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump({"tasks": entries}))
    evaluated = f"max_eval_examples={args.max_eval}" if args.max_eval else "max_eval_examples=null"
    common = [f"output_dir={run_dir}", f"seed={seed}", evaluated]
    if "--config" in extra:  # a committed config, as it is: its tasks read the same local files
        arguments = [*extra, *common, f"data_dir={args.data_dir}", *plain]
    else:
        epochs = EPOCHS_BY_GRID.get(args.grid, EPOCHS.get(mix, 1))
        arguments = ["--config", str(config), *common, f"train.epochs={epochs}",
                     "train.eval_every=0", *plain]
    # --config comes first: the recipe takes every key=value override as one positional list.
    command = [sys.executable, str(ROOT / "recipes" / "cls_ner.py"), *arguments]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{name} seed {seed} failed:\n{result.stderr[-3000:]}")
    # Built-in task names (a committed config) are reported under the benchmark's names.
    metrics = {NAMES.get(task, task): value
               for task, value in read_metrics(run_dir).items()}
    state = read_trainer_state(run_dir)
    return {"metrics": metrics, "wall_seconds": round(wall, 1), "steps": state["step"],
            "train_seconds": state["train_seconds"], "task_batches": state.get("task_batches")}


def wait_while_paused(pause_file: Path) -> None:
    """Hold the next run while PAUSE exists, so other heavy work cannot skew its wall time."""
    if pause_file.exists():
        print(f"paused: remove {pause_file} to go on", flush=True)
    while pause_file.exists():
        time.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="sweep")
    parser.add_argument("--arms", nargs="*", help="run only these arms of the grid")
    parser.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(ROOT / "outputs" / "strategy_benchmark"))
    parser.add_argument("--max-eval", type=int, help="score the first N validation/test examples")
    parser.add_argument("--summary", action="store_true", help="print the tables, run nothing")
    args = parser.parse_args()
    if not (Path(args.data_dir) / "conll2003").is_dir():
        print(f"benchmark skipped: no benchmark data at {args.data_dir} (see ../shared/data/README.md)")
        return
    out = Path(args.out) / args.grid
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    arms = GRIDS[args.grid]
    # Final single-task runs select their checkpoint every 1,000 steps like the committed config;
    # the intent grid measures the library's defaults as they are.
    base = GRID_BASE.get(args.grid, ["train.eval_every=1000", "train.eval_batch_size=128"])
    # Single-task runs only for the mixes of the arms asked for (--arms), each once per seed.
    chosen = {name: arm for name, arm in arms.items() if not args.arms or name in args.arms}
    mixes = sorted({mix for mix, _ in chosen.values()})
    plan = [(f"{SINGLE_TASK}_{mix}_{task}", mix, base, [task]) for mix in mixes for task in MIXES[mix]]
    arm_base = base if args.grid in GRID_BASE else []
    plan += [(name, mix, [*arm_base, *overrides], None) for name, (mix, overrides) in chosen.items()
             if not args.arms or name in args.arms]
    if not args.summary:
        for seed in args.seeds:
            for name, mix, overrides, tasks in plan:
                key = f"{name}/seed{seed}"
                if key in results:
                    continue
                wait_while_paused(Path(args.out) / "PAUSE")
                print(f"running {key}", flush=True)
                results[key] = run_arm(name, mix, overrides, seed, tasks, args, out)
                results_path.write_text(json.dumps(results, indent=2) + "\n")
    mixes = {mix: {f"{SINGLE_TASK}_{mix}_{task}": NAMES[task] for task in MIXES[mix]}
             for mix in sorted({mix for mix, _ in arms.values()})}
    print(strategy_tables(results, {name: mix for name, (mix, _) in arms.items()}, mixes))


if __name__ == "__main__":
    main()
