"""The checks a whole config passes before a run starts: choices, ranges and combinations of keys."""

from __future__ import annotations

from mtl_nlp.common import choices
from mtl_nlp.config.sections import EVAL_EACH_EPOCH, RunConfig
from mtl_nlp.config.values import ConfigError

CHOICES = {
    "mixed_precision": choices.PRECISIONS,
    "sampling.strategy": choices.SAMPLING_STRATEGIES,
    "sampling.anneal": ("up", "down"),
    "train.step_mode": choices.STEP_MODES,
    "train.epoch": ("total", "each_task"),
    "train.grad_norm_mode": ("clip", "normalize"),
    "weighting.method": choices.WEIGHTING_METHODS,
    "distill.anneal": choices.DISTILL_ANNEALS,
    "sharing.adapters.method": choices.ADAPTER_METHODS,
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
    check_adapters(config)
    if train.grad_norm_mode == "normalize" and train.max_grad_norm == 0:
        raise ConfigError("train.grad_norm_mode=normalize scales each step's encoder gradient to "
                          "train.max_grad_norm, which is 0: set it to a positive norm (1.0 by default)")


def check_adapters(config: RunConfig) -> None:
    """sharing.adapters: its ranges, and the sharing keys it cannot be combined with."""
    adapters, sharing = config.sharing.adapters, config.sharing
    if adapters.method == "none":
        return
    if adapters.r < 1:
        raise ConfigError(f"sharing.adapters.r is the rank of each LoRA update: at least 1, got {adapters.r}")
    if adapters.alpha <= 0:
        raise ConfigError(f"sharing.adapters.alpha must be positive, got {adapters.alpha}")
    if not 0 <= adapters.dropout < 1:
        raise ConfigError(f"sharing.adapters.dropout must be in [0, 1), got {adapters.dropout}")
    if adapters.lr is not None and adapters.lr <= 0:
        raise ConfigError(f"sharing.adapters.lr must be positive, got {adapters.lr}")
    if adapters.layers != "all" and (isinstance(adapters.layers, str) or adapters.layers < 1):
        raise ConfigError(f"sharing.adapters.layers is `all` or a number k >= 1 of top layers, got "
                          f"{adapters.layers!r}")
    if adapters.target_modules is not None and not adapters.target_modules:
        raise ConfigError("sharing.adapters.target_modules is empty: name modules, or leave it out for the "
                          "family's attention projections")
    if sharing.private_layers:
        raise ConfigError("sharing.adapters gives each task an adapter in the shared layers, and "
                          "sharing.private_layers gives each task layers of its own: use one or the other")
    if sharing.freeze_encoder and adapters.train_base:
        raise ConfigError("sharing.adapters.train_base trains the shared encoder, which "
                          "sharing.freeze_encoder freezes: set one of them")
    if not adapters.train_base and config.weighting.method in choices.GRADIENT_METHODS:
        raise ConfigError(f"weighting.method={config.weighting.method} combines the tasks' gradients on the "
                          "shared encoder, which adapters keep frozen: set sharing.adapters.train_base=true "
                          "or choose a loss weighting")
