"""Run configuration: dataclasses with defaults, loaded from YAML and `key=value` overrides.

Every value is type-checked against the dataclass field it lands in, and an unknown key is an
error that names the key and the keys that exist, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtl_nlp.common import choices
from mtl_nlp.common.errors import MtlNlpError
from mtl_nlp.common.run_files import CHECKPOINT_CONFIG, STATE_RUN_CONFIG, newest_state

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_TASKS = ("demo_ner", "demo_sentiment", "demo_topic")


class ConfigError(MtlNlpError, ValueError):
    """A configuration file or override that cannot be applied."""


EVAL_EACH_EPOCH = "epoch"  # train.eval_every: evaluate once an epoch


@dataclass
class TrainConfig:
    epochs: float = 3.0  # passes over the mixed training data; ignored when max_steps is set
    # what one epoch is: `total`, as many batches as all tasks have together; `each_task`, long
    # enough that the sampler gives every task as many batches as its training set has
    epoch: str = "total"
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    batch_size: int = 32  # examples per batch (one task per batch)
    max_tokens: int | None = None  # token budget per batch (padded length x rows); overrides batch_size
    # batches per length-sorting window: examples are shuffled, sorted by length inside a window
    # and cut into batches, so padding is small; 1 draws random batches as the HF Trainer does
    # (slower; at lr 5e-5 worth 0.7 F1 on CoNLL-2003, a tie at the default lr: BENCHMARKS.md)
    sort_window: int = 64
    eval_batch_size: int = 64  # examples per evaluation batch
    lr: float = 1e-4  # peak learning rate of AdamW (measured best for the default encoder; see README)
    head_lr: float | None = None  # learning rate of the task heads; None means lr
    layer_lr_decay: float | None = None  # e.g. 0.9: each layer's lr is 0.9 x the one above's; None: all at lr
    weight_decay: float = 0.01  # AdamW weight decay (not applied to biases and LayerNorm)
    warmup_ratio: float = 0.1  # fraction of the optimizer steps spent warming up linearly
    grad_accum: int = 1  # batches accumulated per optimizer step
    max_grad_norm: float = 1.0  # gradient clipping norm; 0 disables clipping
    # clip: a step's gradient above max_grad_norm is scaled down to it; normalize: every step's
    # gradient on the shared encoder is scaled to it (the rest clipped), so tasks whose encoder
    # gradients differ in size move Adam's shared moments alike (a task with small gradients
    # otherwise takes small steps beside one with large ones)
    grad_norm_mode: str = "clip"
    # evaluate (and keep the best checkpoint) every N optimizer steps, or "epoch": once an epoch
    # as train.epoch counts it; 0 evaluates only at the end
    eval_every: int | str = 0
    log_every: int = 10  # refresh the progress bar's running losses (and record them) every N steps
    step_mode: str = "one_task"  # one_task: one sampled task per step; all_tasks: a batch of every task
    save_total_limit: int = 1  # resumable states kept in output_dir (state/, state-<step>/); 0: none
    early_stopping_patience: int | None = None  # stop after this many evaluations without a new best


@dataclass
class SamplingConfig:
    strategy: str = "temperature"  # proportional | temperature | uniform | annealed | round_robin
    temperature: float = 2.0  # T of temperature/annealed: p_i proportional to n_i ** (1/T)
    anneal: str = "up"  # annealed: up moves the exponent 1 -> 1/T over the run, down moves 1/T -> 1
    cap: int | None = None  # at most this many training examples of a task count towards its size


@dataclass
class WeightingConfig:
    method: str = "equal"  # equal | log_size | uncertainty | dwa | rlw | pcgrad | cagrad
    window: int = 50  # dwa: optimizer steps per running-loss window (weights change once a window)
    temperature: float = 2.0  # dwa: softmax temperature of the loss ratios
    cagrad_c: float = 0.5  # cagrad: radius c of the ball around the mean gradient
    lr: float = 0.01  # uncertainty: learning rate of the learned log-variances


@dataclass
class SharingConfig:
    private_layers: int = 0  # the top k encoder layers are copied per task (0: hard sharing)
    soft_l2: float = 0.0  # lambda of the L2 pull of the private copies towards their mean
    freeze_layers: int = 0  # freeze the embeddings and the bottom n encoder layers
    freeze_embeddings: bool = False  # freeze the embeddings only
    # freeze the whole shared encoder: only private layers and heads train (the second stage of
    # `mtl-nlp finetune --private-layers-only`; with hard sharing, the heads alone)
    freeze_encoder: bool = False


@dataclass
class DiagnosticsConfig:
    conflict_every: int = 0  # every K steps record the task x task gradient cosines (0: off)


@dataclass
class DistillConfig:
    # {task or head: teacher checkpoint (a folder or a Hub id) that has it}; each named task learns
    # from the teacher's outputs over its training examples beside its gold labels
    teachers: dict[str, str] = field(default_factory=dict)
    # linear: the gold labels' weight rises from 0 to 1 over the run (teacher annealing, BAM!);
    # none: it stays gold_weight
    anneal: str = "linear"
    gold_weight: float = 0.5  # anneal none: the gold labels' weight; the teacher's is 1 - it
    temperature: float = 1.0  # teacher probabilities are softmax(teacher logits / temperature)


@dataclass
class RunConfig:
    model: str = DEFAULT_MODEL  # Hub id or local path of any AutoModel encoder
    output_dir: str = "outputs/cls_ner"  # best checkpoint, metrics.json and training state
    data_dir: str | None = None  # read built-in tasks from local files under this folder
    tasks: list[Any] = field(default_factory=lambda: list(DEFAULT_TASKS))  # names or inline specs
    max_length: int = 128  # subword tokens per example, special tokens included
    # tokens shared by the overlapping windows that score long tagging examples (max_length // 4)
    stride: int | None = None
    max_train_examples: int | None = None  # use a seeded random subset of each train split
    max_eval_examples: int | None = None  # use the first N examples of validation and test splits
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16; auto picks bf16 where supported
    resume_from: str | None = None  # a run's output_dir (or its state/ folder) to resume
    # start from this mtl_nlp checkpoint's weights: its encoder (and private layers) and the heads of
    # the tasks it has with the same labels; other heads start fresh (`mtl-nlp finetune` sets it)
    init_from: str | None = None
    seed: int = 42  # seeds weights, shuffling and the task sequence
    cache_dir: str | None = None  # datasets cache; None uses the Hugging Face default
    cpu_threads: int | None = None  # torch threads per process on CPU; None: cores / local processes
    # Accelerate trackers (tensorboard, wandb, mlflow, ...) logging into output_dir/logs; none by default
    tracker: list[str] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    sharing: SharingConfig = field(default_factory=SharingConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy, for logging and for saving next to a checkpoint."""
        return dataclasses.asdict(self)


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None,
    base: dict[str, Any] | None = None, base_source: str = "saved config",
) -> RunConfig:
    """Build a RunConfig from defaults, then `base` (a saved config's mapping, e.g. the run
    config inside a checkpoint), then a YAML file, then `key=value` overrides in order."""
    config = RunConfig()
    if base is not None:
        apply_mapping(config, base, source=base_source)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            with path.open(encoding="utf-8") as handle:
                data = yaml.safe_load(handle) or {}
        except YAML_ERRORS as exc:  # a syntax error names its line; a bad value (2024-13-01) does not
            raise ConfigError(f"{path}: not a valid YAML config: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
        apply_mapping(config, data, source=str(path))
    for override in overrides or []:
        key, value = parse_override(override)
        set_value(config, key, value, source="command line")
    for key in PATH_KEYS:  # `~/runs/x` means the home folder, as in a shell
        value = getattr(config, key)
        if value is not None:
            setattr(config, key, str(Path(value).expanduser()))
    validate(config)
    return config


PATH_KEYS = ("output_dir", "data_dir", "cache_dir", "resume_from", "init_from")


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """The config of a run launched from the command line: `load_config`, except that
    `resume_from=DIR` with no config file starts from the run config saved in DIR's checkpoint,
    so resuming needs nothing but the folder (the other overrides still apply on top)."""
    resume = None
    for override in overrides or []:
        key, value = parse_override(override)
        if key == "resume_from":
            resume = value
    if path is not None or resume is None:
        return load_config(path, overrides)
    folder = Path(resume)
    if not folder.exists():
        raise ConfigError(f"resume_from: {folder} does not exist")
    # The newest state's own record first (the run that wrote it), then the checkpoint's (the
    # run that saved the best model); DIR is a run's output_dir or one of its state folders.
    state = newest_state(folder)
    records = [state / STATE_RUN_CONFIG] if state is not None else []
    for saved in (*records, folder / CHECKPOINT_CONFIG, folder.parent / CHECKPOINT_CONFIG):
        if saved.is_file():
            data = json.loads(saved.read_text())
            run_config = data if saved.name == STATE_RUN_CONFIG else data.get("run_config")
            if run_config is not None:
                return load_config(None, overrides, base=run_config, base_source=str(saved))
    raise ConfigError(f"resume_from: {folder} holds no saved run config; give the run's config "
                      "with --config")


CHOICES = {
    "mixed_precision": choices.PRECISIONS,
    "sampling.strategy": choices.SAMPLING_STRATEGIES,
    "sampling.anneal": ("up", "down"),
    "train.step_mode": choices.STEP_MODES,
    "train.epoch": ("total", "each_task"),
    "train.grad_norm_mode": ("clip", "normalize"),
    "weighting.method": choices.WEIGHTING_METHODS,
    "distill.anneal": choices.DISTILL_ANNEALS,
}


def validate(config: RunConfig) -> None:
    """Check values that have a fixed set of choices or a valid range."""
    for key, allowed in CHOICES.items():
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of: {', '.join(allowed)}")
    train = config.train
    positive = {
        "train.batch_size": train.batch_size,
        "train.eval_batch_size": train.eval_batch_size,
        "train.grad_accum": train.grad_accum,
        "train.epochs": train.epochs,
        "train.lr": train.lr,
        "train.log_every": train.log_every,
        "train.sort_window": train.sort_window,
        "max_length": config.max_length,
        "sampling.temperature": config.sampling.temperature,
        "weighting.window": config.weighting.window,
        "weighting.temperature": config.weighting.temperature,
        "weighting.lr": config.weighting.lr,
        "distill.temperature": config.distill.temperature,
    }
    optional_positive = {
        "train.max_steps": train.max_steps,
        "train.max_tokens": train.max_tokens,
        "train.head_lr": train.head_lr,
        "train.layer_lr_decay": train.layer_lr_decay,
        "max_train_examples": config.max_train_examples,
        "max_eval_examples": config.max_eval_examples,
        "cpu_threads": config.cpu_threads,
        "sampling.cap": config.sampling.cap,
        "train.early_stopping_patience": train.early_stopping_patience,
    }
    positive.update({key: value for key, value in optional_positive.items() if value is not None})
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    if isinstance(train.eval_every, str) and train.eval_every != EVAL_EACH_EPOCH:
        raise ConfigError(f"train.eval_every must be a number of steps or {EVAL_EACH_EPOCH!r}, "
                          f"got {train.eval_every!r}")
    non_negative = {
        "train.eval_every": 0 if train.eval_every == EVAL_EACH_EPOCH else train.eval_every,
        "train.weight_decay": train.weight_decay,
        "train.max_grad_norm": train.max_grad_norm, "weighting.cagrad_c": config.weighting.cagrad_c,
        "sharing.private_layers": config.sharing.private_layers, "sharing.soft_l2": config.sharing.soft_l2,
        "sharing.freeze_layers": config.sharing.freeze_layers,
        "diagnostics.conflict_every": config.diagnostics.conflict_every,
        "train.save_total_limit": train.save_total_limit,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{key} must be 0 or more, got {value}")
    if config.stride is not None and not 0 <= config.stride < config.max_length // 2:
        raise ConfigError(
            f"stride must be in [0, max_length // 2 = {config.max_length // 2}), got {config.stride}"
        )
    if not 0 <= train.warmup_ratio < 1:
        raise ConfigError(f"train.warmup_ratio must be in [0, 1), got {train.warmup_ratio}")
    if train.layer_lr_decay is not None and train.layer_lr_decay > 1:
        raise ConfigError(f"train.layer_lr_decay must be in (0, 1] (lower layers learn slower), got "
                          f"{train.layer_lr_decay}")
    if not 0 <= config.distill.gold_weight <= 1:
        raise ConfigError(f"distill.gold_weight must be in [0, 1], got {config.distill.gold_weight}")
    if not config.tasks:
        raise ConfigError("tasks is empty: name at least one task")
    if config.weighting.method in choices.GRADIENT_METHODS and train.step_mode != "all_tasks":
        raise ConfigError(
            f"weighting.method={config.weighting.method} combines every task's gradient in one step: "
            "set train.step_mode=all_tasks"
        )
    if train.early_stopping_patience is not None and not train.eval_every:
        raise ConfigError("train.early_stopping_patience counts evaluations: set train.eval_every too")
    if config.sharing.freeze_encoder and config.weighting.method in choices.GRADIENT_METHODS:
        raise ConfigError(f"weighting.method={config.weighting.method} combines the tasks' gradients on the "
                          "shared encoder, which sharing.freeze_encoder freezes: choose a loss weighting")
    if config.sharing.soft_l2 and not config.sharing.private_layers:
        raise ConfigError("sharing.soft_l2 pulls private layers together: set sharing.private_layers too")
    if train.grad_norm_mode == "normalize" and train.max_grad_norm == 0:
        raise ConfigError("train.grad_norm_mode=normalize scales each step's encoder gradient to "
                          "train.max_grad_norm, which is 0: set it to a positive norm (1.0 by default)")


# What reading YAML text can raise: syntax errors, and values its constructors refuse (a date
# 2024-13-01 is a ValueError, nesting too deep a RecursionError). UnicodeDecodeError is a ValueError.
YAML_ERRORS = (yaml.YAMLError, ValueError, OverflowError, RecursionError)
NULL_SPELLINGS = ("", "~", "null", "Null", "NULL")  # YAML's null, for a `str | None` value


class RawText(str):
    """A command-line value not yet parsed: kept as text for str fields (so `no` stays "no"),
    parsed as YAML for every other type."""


def parse_override(text: str) -> tuple[str, RawText]:
    """Split `train.lr=3e-5` into ("train.lr", "3e-5"); the value is typed when it is applied."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. train.lr=3e-5)")
    return key.strip(), RawText(raw)


def _parse_raw(value: RawText, key: str, source: str) -> Any:
    try:
        return yaml.safe_load(value) if value else None
    except YAML_ERRORS as exc:
        raise ConfigError(f"{source}: value of {key!r} is not valid YAML: {exc}") from exc


def apply_mapping(target: Any, data: dict[str, Any], source: str, prefix: str = "") -> None:
    """Apply nested mapping `data` onto dataclass `target`, recursing into nested dataclasses."""
    for key, value in data.items():
        set_value(target, f"{prefix}{key}", value, source=source, root_prefix=prefix)


def set_value(
    config: Any, dotted_key: str, value: Any, source: str, root_prefix: str = ""
) -> None:
    """Set `dotted_key` (relative to `config`) to `value`, checking the key and the type."""
    parts = dotted_key[len(root_prefix) :].split(".")
    target = config
    for depth, name in enumerate(parts):
        full_key = root_prefix + ".".join(parts[: depth + 1])
        fields = {f.name: f for f in dataclasses.fields(target)}
        if name not in fields:
            valid = ", ".join(sorted(root_prefix + ".".join(parts[:depth] + [n]) for n in fields))
            raise ConfigError(f"{source}: unknown config key {full_key!r}; valid keys: {valid}")
        current = getattr(target, name)
        hint = typing.get_type_hints(type(target))[name]
        if depth < len(parts) - 1 and typing.get_origin(hint) is dict:  # distill.teachers.cola=DIR
            item = ".".join(parts[depth + 1 :])
            value_hint = typing.get_args(hint)[1]
            current[item] = coerce(value, value_hint, root_prefix + ".".join(parts), source)
            return
        if depth < len(parts) - 1:
            if not dataclasses.is_dataclass(current):
                raise ConfigError(f"{source}: {full_key!r} is a value, not a section")
            target = current
            continue
        if dataclasses.is_dataclass(current):
            if isinstance(value, RawText):
                value = _parse_raw(value, full_key, source)
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {full_key!r} is a section; give a mapping")
            apply_mapping(current, value, source, prefix=full_key + ".")
            return
        setattr(target, name, coerce(value, hint, full_key, source))


def coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Return `value` as type `hint`, or raise a ConfigError naming the key and the type."""
    origin = typing.get_origin(hint)
    if isinstance(value, RawText):
        if hint is str:
            return str(value)
        if origin in (typing.Union, types.UnionType) and set(typing.get_args(hint)) == {str, type(None)}:
            # A path or a name: kept as typed (`data_dir=2024`, `cache_dir=/a #b`), except null.
            return None if value.strip() in NULL_SPELLINGS else str(value)
        value = _parse_raw(value, key, source)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key, source)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key!r} expects a mapping, got {value!r}")
        key_hint, value_hint = typing.get_args(hint)
        return {coerce(name, key_hint, key, source): coerce(item, value_hint, f"{key}.{name}", source)
                for name, item in value.items()}
    if origin is list:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key!r} expects a list, got {value!r}")
        item_hint = (typing.get_args(hint) or (Any,))[0]
        return [coerce(item, item_hint, f"{key}[{index}]", source) for index, item in enumerate(value)]
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        # YAML 1.1 reads "3e-5" (no dot) as a string; users write it that way all the time.
        try:
            number = float(value)
        except (ValueError, OverflowError):  # not a number; an int too large for a float
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{source}: {key!r} expects a finite number, got {value!r}")
            return number
    if hint is bool and isinstance(value, bool) or hint is not bool and type(value) is hint:
        return value
    raise ConfigError(
        f"{source}: {key!r} expects {getattr(hint, '__name__', hint)}, got {value!r}"
    )
