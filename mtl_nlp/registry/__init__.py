"""The task registry: a task is one TaskSpec entry (registry.spec), registered from Python or from
a YAML config and found by name (registry.store)."""

from mtl_nlp.registry.spec import MULTI_HEAD, TaskError, TaskSpec
from mtl_nlp.registry.store import get_task, list_tasks, register_task, resolve_tasks, unregister_task

__all__ = ["MULTI_HEAD", "TaskError", "TaskSpec", "get_task", "list_tasks", "register_task", "resolve_tasks",
           "unregister_task"]
