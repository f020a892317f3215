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

from mtl_nlp.common.run_files import COMPLETE, STATE_DIR, WRITING, state_step

if TYPE_CHECKING:
    from accelerate import Accelerator



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
