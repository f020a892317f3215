"""The root of the toolkit's own errors: a user mistake (a config key, a file, a label, a task)
whose message says what to change. Command lines print these as one line and exit with 2;
anything else is a bug and keeps its traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class MtlNlpError(Exception):
    """Base of ConfigError, TaskError, DataError, ModelLoadError, ExportError, SharingError, ..."""


class DataError(MtlNlpError, ValueError):
    """Task data that is missing or malformed; the message names the task and the file."""


def no_checkpoint_at(name: object, hub_reason: str | None = None) -> str:
    """The one message every command gives for a checkpoint (or run) folder that is not there;
    `hub_reason`: why the Hub repository of that id, tried as well, could not be had."""
    message = f"no checkpoint at {name}: there is no such folder"
    if hub_reason:
        message += f", and no Hugging Face Hub repository {str(name)!r} could be downloaded ({hub_reason})"
    return message


# What a user can cause and fix: the toolkit's own errors, and a path that does not exist.
USER_ERRORS = (MtlNlpError, FileNotFoundError)


def run_reporting_user_errors(function: Callable[[], T], prog: str, debug: bool = False) -> T | int:
    """Run `function`; a user error prints as one line `prog: error: ...` on stderr and returns
    exit code 2 (with `debug`, it is raised with its traceback). Bugs are never caught."""
    try:
        return function()
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
