"""Built-in tasks; importing this package registers them."""

from mtl_nlp.tasks.builtin import BUILTIN_TASKS, register_builtin_tasks

register_builtin_tasks()

__all__ = ["BUILTIN_TASKS"]
