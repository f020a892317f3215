"""What a training run keeps on disk while it trains: the best model (output_dir), the resumable
state beside it, and resuming from that state, possibly into another output_dir."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from mtl_nlp.common.run_files import STATE_DIR, STATE_PROGRESS, STATE_RUN_CONFIG, newest_state
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.modeling.checkpoint_files import finish_interrupted_save
from mtl_nlp.modeling.model import MultiTaskModel, is_checkpoint, read_checkpoint_config
from mtl_nlp.reports.model_card import write_checkpoint_card
from mtl_nlp.training.progress import TrainingProgress
from mtl_nlp.training.sharded import (
    fill_missing_optimizer_state,
    gather_full_weights,
    is_fully_sharded,
    load_checkpoint_weights,
)
from mtl_nlp.training.state_files import save_state

logger = logging.getLogger(__name__)


class RunCheckpoints:
    """The best checkpoint and the resumable states of one run in `output_dir`. `progress` and
    `loader` are the run's own: their positions go into each state as JSON (not pickles)."""

    def __init__(
        self, accelerator: Accelerator, model: torch.nn.Module, optimizer: Any, output_dir: Path,
        tokenizer: Any, progress: TrainingProgress, loader: MultiTaskLoader, save_total_limit: int,
        checkpoint_extra: dict[str, Any] | None = None,
    ) -> None:
        self.accelerator, self.model, self.optimizer = accelerator, model, optimizer
        self.output_dir, self.tokenizer = output_dir, tokenizer
        self.progress, self.loader = progress, loader
        self.save_total_limit = save_total_limit
        self.checkpoint_extra = checkpoint_extra or {}

    def save_model(
        self, directory: Path, metrics: dict[str, dict[str, float]] | None = None,
        selection: dict[str, Any] | None = None,
    ) -> None:
        """Write the unwrapped model, tokenizer, head configs (with `selection`: the step and
        validation score it was chosen at) and a model card with the validation `metrics` it was
        chosen by (main process only)."""
        self.accelerator.wait_for_everyone()
        # Under FSDP every process takes part in gathering the whole weights.
        gathered = gather_full_weights(self.accelerator, self.model)
        if self.accelerator.is_main_process:
            model: MultiTaskModel = self.accelerator.unwrap_model(self.model)
            extra = {**self.checkpoint_extra, **({"selection": selection} if selection else {})}
            model.save_pretrained(directory, tokenizer=self.tokenizer, extra=extra, state_dict=gathered)
            write_checkpoint_card(directory, metrics, split="validation")
        self.accelerator.wait_for_everyone()

    def load_best(self) -> None:
        """Put the best checkpoint's weights back into the model (every process)."""
        self.accelerator.wait_for_everyone()
        load_checkpoint_weights(self.accelerator, self.model, self.output_dir)

    def save_state(self) -> None:
        """The resumable state, with the toolkit's progress as JSON and the run's config, so
        resume_from=DIR alone restores this run."""
        run_config = self.checkpoint_extra.get("run_config")
        extra = {STATE_PROGRESS: {"progress": self.progress.state_dict(), "loader": self.loader.state_dict()}}
        if run_config is not None:
            extra[STATE_RUN_CONFIG] = run_config
        if is_fully_sharded(self.accelerator):
            fill_missing_optimizer_state(self.optimizer)
        save_state(self.accelerator, self.output_dir, self.progress.step, self.save_total_limit, extra)
        logger.info("step %d: resumable state saved in %s", self.progress.step, self.output_dir / STATE_DIR)

    def resume(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, RNG, loader and progress from the newest complete
        state of `path` (a run's output_dir, or one of its state folders)."""
        state = newest_state(Path(path))
        if state is None:
            raise FileNotFoundError(f"resume_from: no complete training state in {path}")
        self.accelerator.load_state(str(state))
        saved = json.loads((state / STATE_PROGRESS).read_text())
        self.progress.load_state_dict(saved["progress"])
        self.loader.load_state_dict(saved["loader"])
        logger.info("resumed from %s at step %d", state, self.progress.step)
        self._carry_best_checkpoint(state.parent)

    def _carry_best_checkpoint(self, run_dir: Path) -> None:
        """Resuming into another output_dir: bring the resumed run's best checkpoint along, so
        output_dir always holds the best model seen; with none to bring, the next evaluation saves.

        The best score to beat is the one of the checkpoint on disk (recorded in its
        mtl_nlp.json), not the state's: a crash between saving the model and saving the state
        leaves them at different steps, and a resumed run must never overwrite a better model.
        The main process looks at the files and tells the others, so every process (on any node)
        takes the same decision."""
        found: list[Any] = [None]
        if self.accelerator.is_main_process:
            # A save killed while moving its files: finish it before reading or copying.
            finish_interrupted_save(run_dir)
            finish_interrupted_save(self.output_dir)
            if not is_checkpoint(self.output_dir) and is_checkpoint(run_dir):
                shutil.copytree(run_dir, self.output_dir, ignore=shutil.ignore_patterns(f"{STATE_DIR}*"),
                                dirs_exist_ok=True)
            if is_checkpoint(self.output_dir):
                found[0] = read_checkpoint_config(self.output_dir).get("selection", {})
        broadcast_object_list(found)
        if found[0] is None:
            self.progress.best_score, self.progress.best_step = -math.inf, -1
        elif found[0]:
            self.progress.best_score = found[0]["validation_overall"]
            self.progress.best_step = found[0]["step"]
