"""A checkpoint directory that goes from one save to the next as a whole, never half and half.

Saving writes every file into `.checkpoint.new/` inside the checkpoint, then mtl_nlp.json, whose
"files" manifest holds the size and SHA-256 of every other file; only then are the files moved
into place one by one (each move atomic, mtl_nlp.json last) and the folder removed.

- A crash before the staged mtl_nlp.json exists leaves the previous checkpoint untouched; the
  unfinished folder is discarded by the next save.
- A crash during the moves leaves a complete staged folder. Loading then reads the new
  checkpoint from both places (a staged file where it still is, else the moved one), read-only,
  and the next save (or a resumed run) finishes the moves first.
- Loading checks every file against the manifest, so files of two different saves (an older
  checkpoint version, a copy gone wrong) never load together: they fail with a clear error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mtl_nlp.common.run_files import CHECKPOINT_CONFIG
from mtl_nlp.modeling.encoder import ModelLoadError

PENDING = ".checkpoint.new"  # a save being written, or complete and being moved into place
MANIFEST = "files"  # mtl_nlp.json key: {file name: {"size": bytes, "sha256": hex digest}}


class InconsistentCheckpointError(ModelLoadError):
    """A checkpoint whose files do not match its manifest (missing, or from another save)."""


def file_digest(path: Path) -> dict[str, Any]:
    """The size and SHA-256 of one file."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": digest}


def write_checkpoint(
    directory: Path, write_files: Callable[[Path], None], config: dict[str, Any]
) -> None:
    """Save a checkpoint into `directory`: `write_files(folder)` writes every file but
    mtl_nlp.json into a staging folder, `config` becomes mtl_nlp.json with the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    finish_interrupted_save(directory)
    staging = directory / PENDING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    write_files(staging)
    # every file, those in folders too (a task's adapter folder), by its path inside the checkpoint
    manifest = {path.relative_to(staging).as_posix(): file_digest(path)
                for path in sorted(staging.rglob("*")) if path.is_file()}
    partial = staging / f".{CHECKPOINT_CONFIG}.partial"
    partial.write_text(json.dumps({**config, MANIFEST: manifest}, indent=2) + "\n")
    os.replace(partial, staging / CHECKPOINT_CONFIG)  # from here on the staged save is complete
    _move_into_place(directory, staging)


def finish_interrupted_save(directory: str | Path) -> None:
    """Complete a save that stopped while moving its files into place, or discard one that
    stopped before it was complete (the previous checkpoint is then intact)."""
    staging = Path(directory) / PENDING
    if not staging.is_dir():
        return
    if (staging / CHECKPOINT_CONFIG).is_file():
        _move_into_place(Path(directory), staging)
    else:
        shutil.rmtree(staging)


def _move_into_place(directory: Path, staging: Path) -> None:
    for path in sorted(staging.iterdir(), key=lambda p: p.name == CHECKPOINT_CONFIG):
        target = directory / path.name
        if path.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(path, target)
    staging.rmdir()


def read_manifest_config(directory: Path) -> dict[str, Any]:
    """The mtl_nlp.json of the checkpoint's newest complete save (the staged one, if a save was
    interrupted while moving files), as parsed JSON."""
    staged = directory / PENDING / CHECKPOINT_CONFIG
    path = staged if staged.is_file() else directory / CHECKPOINT_CONFIG
    return json.loads(path.read_text())


@contextlib.contextmanager
def consistent_view(directory: str | Path, attempts: int = 5) -> Iterator[Path]:
    """A folder holding the checkpoint's files, all of one save and checked against its manifest:
    `directory` itself, or (a save interrupted while moving files) a temporary folder of links
    to the staged and the already moved files. Nothing in `directory` is changed.

    A save running at the same time can move files while they are checked: that check is tried
    again (`attempts` times in all) before the mismatch is an error."""
    directory = Path(directory)
    with tempfile.TemporaryDirectory(prefix="mtl-nlp-checkpoint-") as scratch:
        for attempt in range(1, attempts + 1):
            saving = (directory / PENDING).exists()
            try:
                view = _checked_view(directory, Path(scratch) / str(attempt))
                break
            except (InconsistentCheckpointError, FileNotFoundError):
                if attempt == attempts or not (saving or (directory / PENDING).exists()):
                    raise
                time.sleep(0.2 * attempt)
        yield view


def _checked_view(directory: Path, scratch: Path) -> Path:
    staging = directory / PENDING
    if not (staging / CHECKPOINT_CONFIG).is_file():
        verify_files(directory, json.loads((directory / CHECKPOINT_CONFIG).read_text()))
        return directory
    config = json.loads((staging / CHECKPOINT_CONFIG).read_text())
    scratch.mkdir()
    for name in [*config.get(MANIFEST, {}), CHECKPOINT_CONFIG]:
        source = staging / name if (staging / name).exists() else directory / name
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).symlink_to(source.resolve())
    verify_files(scratch, config, shown_as=directory)
    return scratch


def verify_files(folder: Path, config: dict[str, Any], shown_as: Path | None = None) -> None:
    """Raise InconsistentCheckpointError unless every file of the manifest in `config` is in
    `folder` with its recorded size and SHA-256 (checkpoints without a manifest pass)."""
    where = shown_as or folder
    for name, expected in config.get(MANIFEST, {}).items():
        path = folder / name
        if not path.is_file():
            raise InconsistentCheckpointError(f"checkpoint {where} is incomplete: {name} is missing")
        found = file_digest(path)
        if found != expected:
            raise InconsistentCheckpointError(
                f"checkpoint {where}: {name} is not the file its {CHECKPOINT_CONFIG} was saved with "
                f"({found['size']} bytes, sha256 {found['sha256'][:12]}; expected {expected['size']} "
                f"bytes, sha256 {expected['sha256'][:12]}), so its files come from different saves; "
                "save it again from a run, or restore a complete copy"
            )
