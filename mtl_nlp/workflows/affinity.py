"""The inter-task affinity probe of TAG (Fifty et al. 2021): a short multi-task training run of
ordinary steps, built from the same pieces as `train_from_config`, whose every K-th step first
measures how a lookahead step on each task changes every task's loss.

Z(i->j) = 1 - L_j(theta_s - lr * grad_s L_i) / L_j(theta_s): theta_s are the shared encoder's
parameters, lr the current learning rate and the step plain SGD, as in TAG; heads are untouched.
The mean over measurements is the affinity matrix, and the spread between consecutive windows of
measurements its noise; mtl_nlp.reports.task_groups turns them into groupings and a recommendation
(none when the data support none) and plots.plot_affinity draws them.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import send_to_device, set_seed
from torch import nn

from mtl_nlp.common.choices import AFFINITY_EVERY
from mtl_nlp.common.run_files import AFFINITY_FILE, AFFINITY_PLOT
from mtl_nlp.config import ConfigError, RunConfig
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.modeling.encoder import check_encoder
from mtl_nlp.reports import plots
from mtl_nlp.reports.task_groups import (
    check_task_count,
    lookahead_affinity,
    named_matrix,
    noise_estimate,
    recommend,
    task_groupings,
    window_means,
)
from mtl_nlp.training.assembly import assemble_run
from mtl_nlp.training.setup import build_accelerator
from mtl_nlp.training.step import StepRunner

logger = logging.getLogger(__name__)

DEFAULT_STEPS = 200  # probe length when neither steps nor train.max_steps is given


def lookahead_matrix(
    model: nn.Module, shared: list[nn.Parameter], batches: dict[str, dict[str, torch.Tensor]], lr: float
) -> list[list[float]]:
    """One measurement: Z[i][j] = 1 - L_j(after an SGD step of size `lr` on `shared` with task
    i's gradient) / L_j(before), for the tasks of `batches` (one batch each, on the model's
    device). `shared` is restored bit for bit, the model's train/eval mode too, and no `.grad` is
    touched, so the training step that follows is unaffected.

    Losses, gradients and the step run in float32 with autocast off: a step at a fine-tuning lr
    changes a loss by about 1e-4 of itself, below bf16's resolution (2**-8), and under bf16
    autocast Z was rounding noise (it flipped the sign of 4 of 6 affinities between tasks)."""
    # Dropout off for every pass: the same batch then gives the same loss before and after up to
    # the step's own effect, so Z measures the update and not two dropout draws. The lookahead
    # gradient is a pass of its own, not the training step's, and dropout would only add noise.
    was_training = model.training
    model.eval()
    saved = [parameter.detach().clone() for parameter in shared]
    # The backward pass too: autograd.grad under an enclosing autocast computes in bf16.
    try:
        with torch.autocast(shared[0].device.type, enabled=False):
            before, after = _lookahead_losses(model, shared, saved, batches, lr)
    finally:
        with torch.no_grad():
            _restore(shared, saved)
        model.train(was_training)
    tasks = list(batches)
    return [[lookahead_affinity(before[target], after[source][target]) for target in tasks]
            for source in tasks]


def _lookahead_losses(
    model: nn.Module, shared: list[nn.Parameter], saved: list[torch.Tensor],
    batches: dict[str, dict[str, torch.Tensor]], lr: float,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Each task's loss, and every task's loss after a step on each source task: ({task: loss},
    {source: {target: loss}}); `shared` is restored from `saved` after each step."""
    # Accelerate wraps a prepared model's forward in an autocast of its own, which would switch
    # bf16 back on inside ours: the forward it wrapped is called instead.
    forward = getattr(model, "_original_forward", model)
    before: dict[str, float] = {}
    after: dict[str, dict[str, float]] = {}
    for source in batches:
        loss = forward(task=source, **batches[source])["loss"]
        before[source] = loss.item()
        # autograd.grad rather than backward: the parameters' .grad stay as they were.
        gradients = torch.autograd.grad(loss, shared, allow_unused=True)
        with torch.no_grad():
            for parameter, gradient in zip(shared, gradients):
                if gradient is not None:  # e.g. the pooler, unused by a tagging head
                    parameter.sub_(gradient, alpha=lr)
            after[source] = {target: forward(task=target, **batch)["loss"].item()
                             for target, batch in batches.items()}
            _restore(shared, saved)
    return before, after


def _restore(shared: list[nn.Parameter], saved: list[torch.Tensor]) -> None:
    for parameter, copy in zip(shared, saved):
        parameter.copy_(copy)


def shared_lr(optimizer: Any, shared: list[nn.Parameter]) -> float:
    """The current learning rate of the shared parameters (their param group's)."""
    ids = {id(parameter) for parameter in shared}
    for group in optimizer.param_groups:
        if any(id(parameter) in ids for parameter in group["params"]):
            return float(group["lr"])
    return 0.0


def probe_config(config: RunConfig, steps: int | None, every: int) -> RunConfig:
    """`config` with train.max_steps set to the probe's length: `steps`, else the config's
    train.max_steps, else DEFAULT_STEPS (the loader's schedule and the lr schedule follow it)."""
    if every < 1:
        raise ConfigError(f"every={every}: measure every K >= 1 steps")
    length = steps if steps is not None else config.train.max_steps or DEFAULT_STEPS
    if length < every:
        raise ConfigError(f"a probe of {length} steps measuring every {every} steps measures nothing: "
                          f"give at least {every} steps")
    return dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=length))


def measure_affinity(
    config: RunConfig, steps: int | None = None, every: int = AFFINITY_EVERY
) -> dict[str, Any]:
    """Run the probe (one process) on the config's tasks, sampling, step mode, lr and schedule for
    `steps` optimizer steps, measuring the affinity at every `every`-th step (at the parameters
    that step starts from; steps at lr 0 are skipped, they move nothing), and write affinity.json
    and affinity.png to output_dir. Returns affinity.json's content: the mean matrix
    {source: {target: Z}}, its noise (standard errors), the best grouping for each number of
    groups, the recommended one (or that the data support none) and what a measurement costs
    against an ordinary step."""
    config = probe_config(config, steps, every)
    check_task_count(len(config.tasks))  # before any loading: the search refuses too many tasks
    check_encoder(config.model, config.max_length)  # as training does, before any data is read
    accelerator = build_accelerator(config)
    if accelerator.num_processes > 1:
        raise ConfigError("the affinity probe runs in one process: start it with `mtl-nlp affinity`, "
                          "not under accelerate launch or torchrun")
    if config.resume_from:
        logger.warning("the probe starts a fresh model and ignores resume_from; probe from a trained "
                       "checkpoint with init_from=DIR")
    set_seed(config.seed)
    loader, model, optimizer, runner = _build_probe(config, accelerator)
    shared = list(accelerator.unwrap_model(model).shared_parameters())
    if not shared:
        raise ConfigError("the encoder is frozen (sharing.freeze_*): no shared parameters to measure on")
    steps = config.train.max_steps
    started = time.perf_counter()
    record = _run_probe(steps, every, accelerator.device, loader, model, optimizer, runner, shared)
    result = _summary(list(loader.sizes), record, steps, every, time.perf_counter() - started)
    result["step_mode"] = config.train.step_mode
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / AFFINITY_FILE).write_text(json.dumps(result, indent=2) + "\n")
    plots.plot_affinity(result, output / AFFINITY_PLOT)
    logger.info("affinity written to %s and %s", output / AFFINITY_FILE, output / AFFINITY_PLOT)
    del runner, model, optimizer
    accelerator.free_memory()
    gc.collect()
    accelerator.end_training()
    return result


@dataclass
class ProbeRecord:
    """The probe's measured matrices, in order, and where its time went."""

    matrices: list[list[list[float]]] = dataclasses.field(default_factory=list)
    measuring: float = 0.0  # seconds in affinity measurements
    stepping: float = 0.0  # seconds in ordinary training steps


def _run_probe(
    steps: int, every: int, device: Any, loader: MultiTaskLoader, model: nn.Module, optimizer: Any,
    runner: StepRunner, shared: list[nn.Parameter],
) -> ProbeRecord:
    """`steps` training steps; before every `every`-th one, a measurement on one fresh batch of
    every task (one_task mode draws one task per step, so the step's own batches would not do)."""
    names = list(loader.sizes)
    record = ProbeRecord()
    batches = iter(loader)
    model.train()
    for step in range(1, steps + 1):
        lr = shared_lr(optimizer, shared)
        if step % every == 0 and lr > 0:
            tick = _clock()
            probe = send_to_device({task: loader.next_batch(task) for task in names}, device)
            record.matrices.append(lookahead_matrix(model, shared, probe, lr))
            record.measuring += _clock() - tick
        tick = _clock()
        runner.run(batches, step)
        record.stepping += _clock() - tick
    if not record.matrices:
        raise ConfigError("no step was measured: the learning rate was 0 at every measured step")
    return record


def _build_probe(config: RunConfig, accelerator: Any) -> tuple[MultiTaskLoader, nn.Module, Any, StepRunner]:
    """The run's parts, as a training run assembles them (init_from: affinity of the tasks around
    a trained checkpoint), and a step runner over them."""
    parts = assemble_run(config, accelerator)
    train = config.train
    runner = StepRunner(accelerator, parts.model, parts.optimizer, parts.scheduler, parts.weighting,
                        train.grad_accum, parts.loader.batches_per_step, train.max_grad_norm,
                        grad_norm_mode=train.grad_norm_mode, annealing=parts.annealing)
    return parts.loader, parts.model, parts.optimizer, runner


def _clock() -> float:
    """Wall time after the GPU's queued work, so a timing covers the work and not its launch."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def _summary(tasks: list[str], record: ProbeRecord, steps: int, every: int, seconds: float) -> dict[str, Any]:
    """affinity.json's content."""
    count = len(record.matrices)
    matrix = window_means(record.matrices, windows=1)[0]  # the mean of all measurements
    windows = window_means(record.matrices)
    groupings = task_groupings(tasks, matrix)
    per_step, per_measurement = record.stepping / steps, record.measuring / count
    return {
        "tasks": tasks,
        "matrix": named_matrix(tasks, matrix),
        "steps": steps,
        "measurements": count,
        "every": every,
        "seconds": round(seconds, 3),
        "seconds_per_step": round(per_step, 5),
        "seconds_per_measurement": round(per_measurement, 5),
        # what one measurement costs, in ordinary training steps
        "measurement_cost_in_steps": round(per_measurement / per_step, 2) if per_step > 0 else None,
        "noise": noise_estimate(tasks, windows),
        "groupings": groupings,
        "recommended": recommend(tasks, groupings, windows),
    }
