"""mtl_nlp: multi-task fine-tuning of one shared Transformer encoder with many task heads."""

from mtl_nlp import tasks as _builtin_tasks  # noqa: F401  (registers the built-in tasks)
from mtl_nlp.config import ConfigError, RunConfig, load_config
from mtl_nlp.data import DataError, TaskData, prepare_task_data
from mtl_nlp.inference import Predictor
from mtl_nlp.modeling import HeadConfig, ModelLoadError, MultiTaskModel, load_tokenizer
from mtl_nlp.registry import (
    TaskError,
    TaskSpec,
    get_task,
    list_tasks,
    register_task,
    resolve_tasks,
    unregister_task,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "HeadConfig",
    "ModelLoadError",
    "MultiTaskModel",
    "Predictor",
    "RunConfig",
    "TaskData",
    "TaskError",
    "TaskSpec",
    "get_task",
    "list_tasks",
    "load_config",
    "load_tokenizer",
    "prepare_task_data",
    "register_task",
    "resolve_tasks",
    "unregister_task",
]
