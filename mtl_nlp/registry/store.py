"""The registry itself: the tasks registered by name, and a config's `tasks:` list resolved into
entries (names, inline entries, or a registered entry with some fields changed for one run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtl_nlp.registry.spec import TaskError, TaskSpec

_REGISTRY: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add `spec` to the registry; a second task with the same name is an error."""
    if spec.name in _REGISTRY:
        raise TaskError(
            f"task {spec.name!r} is already registered; pick another name "
            f"(registered: {', '.join(list_tasks())})"
        )
    _REGISTRY[spec.name] = spec
    return spec


def unregister_task(name: str) -> None:
    """Remove a task (used by tests and by code that replaces an entry on purpose)."""
    get_task(name)
    del _REGISTRY[name]


def get_task(name: str) -> TaskSpec:
    """Return the registered task `name`; an unknown name lists the names that exist."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TaskError(
            f"unknown task {name!r}; registered tasks: {', '.join(list_tasks()) or '(none)'}"
        ) from None


def list_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    return sorted(_REGISTRY)


def resolve_tasks(entries: list[str | Mapping[str, Any]]) -> list[TaskSpec]:
    """Turn a config's `tasks:` list (names or inline entries) into specs.

    Inline entries are registered, so a run's tasks are all visible in the registry; an inline
    entry that repeats a registered name is accepted only when it is the very same spec. A mapping
    that names a registered task and gives no `type` changes some of its fields for this run only
    (`{name: conll2003, layer: 3}`); the registry keeps the original.
    """
    specs: list[TaskSpec] = []
    for entry in entries:
        if isinstance(entry, str):
            spec = get_task(entry)
        elif (isinstance(entry, Mapping) and "type" not in entry and "heads" not in entry
              and entry.get("name") in _REGISTRY):
            spec = _REGISTRY[entry["name"]].with_changes(entry)
        elif isinstance(entry, Mapping):
            spec = TaskSpec.from_dict(entry)
            if _REGISTRY.get(spec.name) != spec:
                register_task(spec)
        else:
            raise TaskError(f"a tasks entry must be a name or a mapping, got {entry!r}")
        if spec.name in {s.name for s in specs}:
            raise TaskError(f"task {spec.name!r} is listed twice in tasks")
        specs.append(spec)
    _check_unique_heads(specs)
    return specs


def _check_unique_heads(specs: list[TaskSpec]) -> None:
    """Head names name tasks everywhere (metrics, predictions, export): TaskError when a head
    shares its name with another head or task of the run."""
    owners: dict[str, list[str]] = {}
    for spec in specs:
        for name in {spec.name, *(head.name for head in spec.head_specs)}:
            owners.setdefault(name, []).append(spec.name)
    repeated = {name: entries for name, entries in owners.items() if len(entries) > 1}
    if repeated:
        shown = "; ".join(f"{name!r} in {', '.join(entries)}" for name, entries in repeated.items())
        raise TaskError(f"task and head names must be unique in a run: {shown}")
