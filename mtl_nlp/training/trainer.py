"""The Accelerate training loop: task-sampled batches, periodic evaluation, early stopping and
stop signals; the checkpoints it keeps are checkpointing.py's, its reports run_reports.py's."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from mtl_nlp.config import TrainConfig
from mtl_nlp.data.multitask import MultiTaskLoader
from mtl_nlp.data.pipeline import TaskData, head_main_metrics
from mtl_nlp.reports.run_results import MAIN_METRICS, OVERALL
from mtl_nlp.reports.score_tables import format_main_scores
from mtl_nlp.training.checkpointing import RunCheckpoints
from mtl_nlp.training.evaluation import evaluate
from mtl_nlp.training.interrupts import StopRequests, TrainingInterrupted
from mtl_nlp.training.metrics import overall_score, recorded_main_metrics
from mtl_nlp.training.progress import RunningLoss, TrainingProgress
from mtl_nlp.training.run_reports import trainer_summary, write_json, write_run_reports
from mtl_nlp.training.setup import count_optimizer_steps, evaluation_interval
from mtl_nlp.training.step import StepResult, StepRunner
from mtl_nlp.training.teacher_annealing import TeacherAnnealing
from mtl_nlp.training.weighting import EqualWeighting, LossWeighting

logger = logging.getLogger(__name__)

class MultiTaskTrainer:
    """Trains a prepared MultiTaskModel on a MultiTaskLoader and keeps the best checkpoint in
    `output_dir` (by the mean validation score over tasks)."""

    def __init__(
        self, accelerator: Accelerator, model: torch.nn.Module, optimizer: Any, scheduler: Any,
        loader: MultiTaskLoader, eval_loaders: dict, tasks: dict[str, TaskData],
        config: TrainConfig, output_dir: str | Path, tokenizer: Any,
        checkpoint_extra: dict[str, Any] | None = None, weighting: LossWeighting | None = None,
        conflict_every: int = 0, annealing: TeacherAnnealing | None = None,
    ) -> None:
        self.accelerator = accelerator
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loader, self.eval_loaders, self.tasks = loader, eval_loaders, tasks
        self.config = config
        self.eval_interval = evaluation_interval(config, loader)  # steps; 0: at the end only
        self.output_dir = Path(output_dir)
        self.progress = TrainingProgress()
        # {head: main metric}: an entry of several heads is scored by each of its heads
        self.main_metrics = head_main_metrics(tasks)
        loss_weights = {name: data.spec.loss_weight for name, data in tasks.items()}
        self.weighting = weighting or EqualWeighting(list(tasks), loss_weights)
        self.conflict_every = conflict_every
        self.steps = StepRunner(
            accelerator, model, optimizer, scheduler, self.weighting, config.grad_accum,
            loader.batches_per_step, config.max_grad_norm, conflict_every, config.grad_norm_mode,
            annealing,
        )
        self.checkpoints = RunCheckpoints(accelerator, model, optimizer, self.output_dir, tokenizer,
                                          self.progress, loader, config.save_total_limit, checkpoint_extra)
        # The weighting's state (tensors only) goes into Accelerate's state with the optimizer's.
        accelerator.register_for_checkpointing(self.weighting)

    def resume(self, path: str | Path) -> None:
        """Continue from the newest complete state of `path` (see RunCheckpoints.resume)."""
        self.checkpoints.resume(path)

    def train(self) -> TrainingProgress:
        """Run until total_steps, evaluating every train.eval_every steps (or epoch) and at the end."""
        total = count_optimizer_steps(self.config, self.loader)
        bar = tqdm(total=total, initial=self.progress.step, desc="train",
                   disable=not self.accelerator.is_local_main_process)
        running = RunningLoss()
        self.model.train()
        started = time.perf_counter()
        batches = iter(self.loader)
        # log lines during the loop go above the bar instead of through it
        with StopRequests() as stops, logging_redirect_tqdm():
            self._loop(total, batches, bar, running, started, stops)
        return self.progress

    def _loop(
        self, total: int, batches: Any, bar: tqdm, running: RunningLoss, started: float,
        stops: StopRequests,
    ) -> None:
        """The optimizer steps with their logging, evaluations and early stop, then the final
        evaluation; a stop signal ends it after a step with a saved state."""
        while self.progress.step < total:
            result = self.steps.run(batches, self.progress.step + 1)
            self._record(result, running)
            self.progress.step += 1
            bar.update(1)
            logging_step = self.progress.step % self.config.log_every == 0 or self.progress.step == total
            received = stops.agreed(self.accelerator, sync_point=logging_step)
            if received is not None:
                self._stop_for_signal(received, started)
            if logging_step:
                self._log_losses(running, bar)
            if self.eval_interval and self.progress.step % self.eval_interval == 0:
                self.progress.train_seconds += time.perf_counter() - started
                self.evaluate_and_checkpoint()
                started = time.perf_counter()
                if self.patience_exhausted():
                    logger.info(
                        "early stop at step %d: no better validation score in %d evaluations "
                        "(best at step %d)", self.progress.step, self.config.early_stopping_patience,
                        self.progress.best_step,
                    )
                    self.progress.stopped_early = self.progress.step
                    break
        self.progress.train_seconds += time.perf_counter() - started
        bar.close()
        evaluated = self.progress.history and self.progress.history[-1]["step"] == self.progress.step
        if not evaluated or self.progress.best_step < 0:  # best_step < 0: nothing saved yet
            self.evaluate_and_checkpoint()
        logger.info("batches per task: %s", json.dumps(self.loader.drawn))
        self.accelerator.log({f"task_batches/{task}": n for task, n in self.loader.drawn.items()},
                             step=self.progress.step)

    def _stop_for_signal(self, received: int, started: float) -> None:
        """Save a resumable state at this step (no evaluation: pre-emption leaves little time)
        and exit with 128 + the signal number."""
        self.progress.train_seconds += time.perf_counter() - started
        self.checkpoints.save_state()
        name = signal.Signals(received).name
        logger.warning("%s: stopped at step %d with a resumable state saved; continue with "
                       "resume_from=%s", name, self.progress.step, self.output_dir)
        self.accelerator.wait_for_everyone()
        raise TrainingInterrupted(128 + received)

    def patience_exhausted(self) -> bool:
        """True when the last `early_stopping_patience` evaluations brought no new best score."""
        patience = self.config.early_stopping_patience
        if patience is None:
            return False
        since_best = [entry for entry in self.progress.history if entry["step"] > self.progress.best_step]
        return len(since_best) >= patience

    def _record(self, result: StepResult, running: RunningLoss) -> None:
        for task, loss in result.losses:
            running.update(task, loss)
        self.progress.real_tokens += result.real_tokens
        self.progress.padded_tokens += result.padded_tokens
        if result.cosines is not None:
            self.progress.conflicts.append({"step": self.progress.step + 1, "cosine": result.cosines})

    def _log_losses(self, running: RunningLoss, bar: tqdm) -> None:
        """Record each task's running loss and current loss weight, and show the losses."""
        losses, weights = running.read(), self.weighting.current_weights()
        self.progress.loss_history.append({"step": self.progress.step, "losses": losses, "weights": weights})
        self.accelerator.log({
            **{f"train/loss/{task}": value for task, value in losses.items()},
            **{f"train/weight/{task}": value for task, value in weights.items()},
            "train/lr": self.scheduler.get_last_lr()[0],
        }, step=self.progress.step)
        bar.set_postfix({task: f"{value:.3f}" for task, value in losses.items()}, refresh=False)

    def evaluate_and_checkpoint(self) -> dict[str, dict[str, float]]:
        """Score the validation splits; save the model when the overall score improves, and
        save the resumable training state."""
        started = time.perf_counter()
        metrics = evaluate(self.accelerator, self.model, self.eval_loaders, self.tasks)
        seconds = time.perf_counter() - started
        examples = sum(len(data.splits["validation"]) for data in self.tasks.values())
        score = overall_score(metrics, self.main_metrics)
        recorded = recorded_main_metrics(metrics, self.main_metrics)
        self.progress.history.append({
            "step": self.progress.step, OVERALL: score, **metrics, MAIN_METRICS: recorded,
            "eval_seconds": round(seconds, 2), "eval_examples_per_second": round(examples / seconds, 1),
        })
        scores = {f"validation/{task}/{name}": value
                  for task, values in metrics.items() for name, value in values.items()}
        self.accelerator.log({"validation/overall": score, **scores}, step=self.progress.step)
        if score > self.progress.best_score:
            self.progress.best_score, self.progress.best_step = score, self.progress.step
            selection = {"step": self.progress.step, "validation_overall": score}
            # the model card reads each task's main metric (an entry's exact match) from main_metrics
            self.checkpoints.save_model(self.output_dir, {**metrics, MAIN_METRICS: recorded}, selection)
        self.accelerator.print(
            f"step {self.progress.step}: validation overall {score:.4f} "
            f"(best {self.progress.best_score:.4f} at step {self.progress.best_step}): "
            + format_main_scores({**metrics, MAIN_METRICS: recorded})
        )
        self.checkpoints.save_state()
        self.write_reports()
        return metrics

    def write_reports(self) -> None:
        """trainer_state.json, curves.png and (when measured) conflicts.json/png (main process)."""
        conflicts = None
        if self.progress.conflicts:
            conflicts = {"tasks": list(self.tasks), "every": self.conflict_every,
                         "step_mode": self.loader.step_mode, "records": self.progress.conflicts}
        write_run_reports(self.accelerator, self.output_dir, self.trainer_summary(), conflicts)

    def load_best(self) -> None:
        """Put the best checkpoint's weights back into the model (every process)."""
        self.checkpoints.load_best()

    def trainer_summary(self) -> dict[str, Any]:
        """Throughput, padding and validation history, for trainer_state.json."""
        return trainer_summary(self.progress, self.accelerator.num_processes, self.loader, self.weighting)

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Write `data` as JSON into output_dir (main process only)."""
        write_json(self.accelerator, self.output_dir, name, data)
