"""Training: the Accelerate loop, evaluation, metrics, optimizer and precision choices."""

from mtl_nlp.precision import resolve_mixed_precision
from mtl_nlp.training.affinity import measure_affinity
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
    "measure_affinity",
    "overall_score",
    "resolve_mixed_precision",
    "sharing_shape",
    "tagging_metrics",
    "train_from_config",
]
