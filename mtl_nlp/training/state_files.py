"""Resumable training states that are never half-written.

Each state is written into a fresh folder (`state.new/`), marked complete last (complete.json,
holding its step), and only then switched in with renames: the previous `state/` becomes
`state-<step>/` (kept while `save_total_limit` allows, else deleted) and `state.new/` becomes
`state/`. A crash at any moment leaves at least one complete state, and resuming picks the
newest complete one among all of them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # this module is read by config loading too, which stays free of accelerate
    from accelerate import Accelerator

STATE_DIR = "state"  # the newest complete state, inside output_dir
WRITING = "state.new"  # the state being written
COMPLETE = "complete.json"  # written last into a state folder: {"step": N}
TRAINER_JSON = "trainer_progress.json"  # the toolkit's own state: progress and loader positions


def state_step(folder: Path) -> int | None:
    """The step of a complete state folder, None when it is incomplete or not a state."""
    marker = folder / COMPLETE
    try:
        return int(json.loads(marker.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def newest_state(path: Path) -> Path | None:
    """The newest complete state of a run: `path` itself when it is a complete state folder,
    else the complete state folder inside output_dir `path` with the highest step."""
    if state_step(path) is not None:
        return path
    if not path.is_dir():
        return None
    candidates = [folder for folder in path.iterdir()
                  if folder.is_dir() and folder.name.startswith(STATE_DIR) and state_step(folder) is not None]
    return max(candidates, key=state_step, default=None)


def save_state(
    accelerator: Accelerator, output_dir: Path, step: int, keep: int,
    extra_files: dict[str, Any] | None = None,
) -> None:
    """Write a resumable state of every process, then switch it in atomically (main process).

    `keep` complete states stay on disk (the newest as `state/`); 0 writes none."""
    if keep <= 0:
        return
    writing = output_dir / WRITING
    if accelerator.is_main_process:
        shutil.rmtree(writing, ignore_errors=True)  # a half-written state of a crashed run
    accelerator.wait_for_everyone()
    accelerator.save_state(str(writing))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for name, data in (extra_files or {}).items():
            (writing / name).write_text(json.dumps(data, indent=2) + "\n")
        (writing / COMPLETE).write_text(json.dumps({"step": step}) + "\n")
        _switch_in(output_dir, writing, keep)
    accelerator.wait_for_everyone()


def _switch_in(output_dir: Path, writing: Path, keep: int) -> None:
    current = output_dir / STATE_DIR
    previous_step = state_step(current)
    if current.exists():
        if previous_step is None:  # an incomplete folder under the final name: never worth keeping
            shutil.rmtree(current)
        else:
            kept = output_dir / f"{STATE_DIR}-{previous_step}"
            shutil.rmtree(kept, ignore_errors=True)  # the same step saved again (a resumed run)
            current.rename(kept)
    writing.rename(current)
    older = sorted((folder for folder in output_dir.glob(f"{STATE_DIR}-*") if state_step(folder) is not None),
                   key=state_step)
    for folder in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(folder)
