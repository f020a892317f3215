"""mtl_nlp: multi-task fine-tuning of one shared Transformer encoder with many task heads.

The public names load on first use (PEP 562), so `import mtl_nlp` and the registry stay light:
listing tasks or reading a config imports neither torch nor datasets, and loading a Predictor
imports neither the data pipeline nor the training code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mtl_nlp import tasks as _builtin_tasks  # noqa: F401  (registers the built-in tasks)
from mtl_nlp.config import ConfigError, RunConfig, load_config
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

_LAZY = {
    "DataError": "mtl_nlp.data",
    "TaskData": "mtl_nlp.data",
    "prepare_task_data": "mtl_nlp.data",
    "Predictor": "mtl_nlp.inference",
    "HeadConfig": "mtl_nlp.modeling",
    "ModelLoadError": "mtl_nlp.modeling",
    "MultiTaskModel": "mtl_nlp.modeling",
    "load_tokenizer": "mtl_nlp.modeling",
    "export_task": "mtl_nlp.publish.export",
    "ExportError": "mtl_nlp.publish.export",
    "push_to_hub": "mtl_nlp.publish.hub",
}

if TYPE_CHECKING:
    from mtl_nlp.data import DataError, TaskData, prepare_task_data
    from mtl_nlp.inference import Predictor
    from mtl_nlp.modeling import HeadConfig, ModelLoadError, MultiTaskModel, load_tokenizer
    from mtl_nlp.publish.export import ExportError, export_task
    from mtl_nlp.publish.hub import push_to_hub


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mtl_nlp' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "ConfigError",
    "DataError",
    "ExportError",
    "HeadConfig",
    "ModelLoadError",
    "MultiTaskModel",
    "Predictor",
    "RunConfig",
    "TaskData",
    "TaskError",
    "TaskSpec",
    "export_task",
    "get_task",
    "list_tasks",
    "load_config",
    "load_tokenizer",
    "prepare_task_data",
    "push_to_hub",
    "register_task",
    "resolve_tasks",
    "unregister_task",
]
