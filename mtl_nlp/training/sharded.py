"""Fully sharded training (FSDP2 through Accelerate): which runs it can take, and moving whole
checkpoints out of and into a model whose parameters are sharded over the processes.

Under FSDP every process holds a slice of each parameter, gradient and optimizer state, so a model
too large for one device's memory trains. Loss-level strategies (sampling, `equal`, `log_size`,
`dwa`, `rlw` weighting, private layers, heads on lower layers, frozen layers, both step modes,
gradient accumulation) work as under DDP. What needs a task's whole gradient on every process
(gradient surgery, conflict diagnostics) or parameters outside the sharded model (learned loss
weights, the soft-L2 pull between private copies computed from whole weights), and the shared
encoder's gradient norm apart from the heads' (`grad_norm_mode=normalize`) is refused at start.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch import nn

from mtl_nlp.common.choices import GRADIENT_METHODS
from mtl_nlp.config import ConfigError, RunConfig

FSDP_CONFIG = "recipes/accelerate/fsdp.yaml"  # the Accelerate config the README shows
UNSHARDABLE = (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)


def is_fully_sharded(accelerator: Accelerator) -> bool:
    """True when the run's parameters are sharded over the processes (FSDP)."""
    return accelerator.distributed_type == DistributedType.FSDP


def sharded_conflicts(config: RunConfig) -> list[str]:
    """The run's settings that cannot train under FSDP, each with the reason."""
    conflicts = []
    method = config.weighting.method
    if method in GRADIENT_METHODS:
        conflicts.append(f"weighting.method={method} (combines each task's whole gradient, which "
                         "no process holds under FSDP)")
    if method == "uncertainty":
        conflicts.append("weighting.method=uncertainty (its learned loss weights live outside the "
                         "sharded model)")
    if config.diagnostics.conflict_every:
        conflicts.append("diagnostics.conflict_every (needs each task's whole gradient)")
    if config.sharing.adapters.method != "none":
        conflicts.append("sharing.adapters (peft's adapters under FSDP are not tested with mtl_nlp; train "
                         "them with DDP, which holds a few megabytes of adapters per task easily)")
    if config.sharing.soft_l2:
        conflicts.append("sharing.soft_l2 (pulls whole private weights together in every forward)")
    if config.train.grad_norm_mode == "normalize":
        conflicts.append("train.grad_norm_mode=normalize (measures the shared encoder's gradient norm "
                         "apart from the heads', which is not done over shards)")
    return conflicts


def check_distributed_type(accelerator: Accelerator, config: RunConfig) -> None:
    """ConfigError for a distributed setup this run cannot train under: DeepSpeed and
    Megatron-LM, FSDP version 1, or FSDP with settings that need whole gradients."""
    kind = accelerator.distributed_type
    if kind in UNSHARDABLE:
        raise ConfigError(
            f"Accelerate is set up for {kind.value}, which mtl_nlp does not support (its step "
            f"runs its own gradient accumulation): launch with FSDP (--config_file {FSDP_CONFIG}) "
            "or DDP (`accelerate launch --multi_gpu ...`)"
        )
    if kind != DistributedType.FSDP:
        return
    if not accelerator.is_fsdp2:
        raise ConfigError(f"FSDP version 1 is not supported: set fsdp_version: 2 in the Accelerate "
                          f"config (as {FSDP_CONFIG} does)")
    conflicts = sharded_conflicts(config)
    if conflicts:
        raise ConfigError(f"under FSDP these settings cannot train: {'; '.join(conflicts)}. "
                          "Launch with DDP for them, or change them")


def gather_full_weights(accelerator: Accelerator, model: nn.Module) -> dict[str, torch.Tensor] | None:
    """Under FSDP, the prepared model's whole state dict gathered from the shards, on the CPU of
    the main process (every process must call it: the gathering is collective); None otherwise,
    where each process's model holds its whole weights already."""
    if not is_fully_sharded(accelerator):
        return None
    return accelerator.get_state_dict(model)


def load_checkpoint_weights(accelerator: Accelerator, model: nn.Module, directory: str | Path) -> None:
    """Copy a saved checkpoint's weights into a prepared model, in place, on every process (under
    FSDP each process keeps its own shard of them)."""
    unwrapped = accelerator.unwrap_model(model)
    if not is_fully_sharded(accelerator):
        unwrapped.load_weights_from(directory)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    saved = unwrapped.checkpoint_state_dict(directory)
    set_model_state_dict(model, saved, options=StateDictOptions(full_state_dict=True, strict=True))


def fill_missing_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Give every parameter that has no optimizer state yet (a head never trained so far, BERT's
    unread pooler) the state AdamW starts from: step 0 and zero moments.

    A sharded optimizer state is loaded key by key into an optimizer that has state for every
    parameter, so a saved state must hold them all. This changes nothing in training: AdamW
    starts each parameter from exactly this state, and skips parameters without a gradient
    either way. The state is made by AdamW itself, in a step with zero gradients at lr 0.
    """
    optimizer = getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper: the AdamW inside
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    missing = [p for p in parameters if p not in optimizer.state]
    if not missing:
        return
    missing_ids = {id(p) for p in missing}  # by identity: `in` on a list of tensors compares values
    gradients = [(p, p.grad) for p in parameters]
    lrs = [group["lr"] for group in optimizer.param_groups]
    try:
        for parameter in parameters:
            parameter.grad = torch.zeros_like(parameter) if id(parameter) in missing_ids else None
        for group in optimizer.param_groups:
            group["lr"] = 0.0
        optimizer.step()
        for parameter in missing:
            optimizer.state[parameter]["step"].zero_()
    finally:
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
        for parameter, gradient in gradients:
            parameter.grad = gradient
