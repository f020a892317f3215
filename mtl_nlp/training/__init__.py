"""Training: the Accelerate loop (setup, what a run trains, one optimizer step, evaluation, metrics,
checkpoints and resumable state, loss weighting and gradient surgery)."""

from mtl_nlp.training.evaluation import build_eval_loaders, evaluate
from mtl_nlp.training.metrics import classification_metrics, overall_score, tagging_metrics
from mtl_nlp.training.optim import build_optimizer, build_scheduler
from mtl_nlp.training.progress import TrainingProgress
from mtl_nlp.training.run import evaluate_checkpoint, train_from_config
from mtl_nlp.training.setup import (
    build_accelerator,
    build_train_loader,
    check_output_dir,
    count_optimizer_steps,
    head_configs,
    sharing_shape,
)
from mtl_nlp.training.trainer import MultiTaskTrainer
from mtl_nlp.training.weighting import LossWeighting, build_weighting

__all__ = [
    "LossWeighting",
    "build_weighting",
    "MultiTaskTrainer",
    "TrainingProgress",
    "build_accelerator",
    "build_eval_loaders",
    "build_optimizer",
    "build_scheduler",
    "build_train_loader",
    "check_output_dir",
    "classification_metrics",
    "count_optimizer_steps",
    "evaluate",
    "evaluate_checkpoint",
    "head_configs",
    "overall_score",
    "sharing_shape",
    "tagging_metrics",
    "train_from_config",
]
