"""What a training run reports beside its checkpoint as it goes: trainer_state.json (throughput,
padding, validation and loss history), curves.png and, when measured, the gradient conflicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from mtl_nlp.common.run_files import CONFLICTS, CONFLICTS_PLOT, CURVES, TRAINER_STATE
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.reports import plots
from mtl_nlp.training.progress import TrainingProgress, peak_memory_mb
from mtl_nlp.training.weighting import LossWeighting


def trainer_summary(
    progress: TrainingProgress, processes: int, loader: MultiTaskLoader, weighting: LossWeighting,
) -> dict[str, Any]:
    """Throughput, padding and validation history, for trainer_state.json."""
    p = progress
    return {
        "step": p.step,
        "best_step": p.best_step,
        "best_validation_overall": p.best_score,
        "stopped_early_at": p.stopped_early,
        "train_seconds": round(p.train_seconds, 2),
        "real_tokens_per_second": round(p.real_tokens * processes / max(p.train_seconds, 1e-9), 1),
        "padding_fraction": round(1 - p.real_tokens / max(p.padded_tokens, 1), 4),
        "num_processes": processes,
        "peak_memory_mb": round(peak_memory_mb(), 1),
        "task_batches": dict(loader.drawn),  # the realised mix, this process's batches
        "weighting": {"method": type(weighting).__name__, "weights": weighting.current_weights()},
        "history": p.history,
        "loss_history": p.loss_history,
    }


def write_json(accelerator: Accelerator, output_dir: Path, name: str, data: dict[str, Any]) -> None:
    """Write `data` as JSON into output_dir (main process only)."""
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / name).write_text(json.dumps(data, indent=2) + "\n")


def write_run_reports(
    accelerator: Accelerator, output_dir: Path, summary: dict[str, Any], conflicts: dict[str, Any] | None,
) -> None:
    """trainer_state.json, curves.png and (with `conflicts` measured) conflicts.json/png."""
    write_json(accelerator, output_dir, TRAINER_STATE, summary)
    if not accelerator.is_main_process:
        return
    plots.plot_curves(summary, output_dir / CURVES)
    if conflicts is not None:
        write_json(accelerator, output_dir, CONFLICTS, conflicts)
        plots.plot_conflicts(conflicts, output_dir / CONFLICTS_PLOT)
