"""Checkpoints on the Hugging Face Hub: publish a run's output_dir (or a task export) as a model
repository, and load a checkpoint by repository id wherever a checkpoint directory is taken.

A push uploads what a user of the model needs (weights, tokenizer, heads, mtl_nlp.json, the
model card, metrics, curves, tracker logs) and never the resumable training state: Accelerate
writes it as pickles (code runs when it loads) and it is three times the model's size. The
checkpoint's files are taken from one save, checked against its manifest, even while a run is
still saving into the folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from mtl_nlp.common.errors import MtlNlpError, no_checkpoint_at
from mtl_nlp.common.run_files import CHECKPOINT_CONFIG, ONNX_DIR, STATE_DIR, WRITING
from mtl_nlp.modeling.checkpoint_files import (
    MANIFEST,
    PENDING,
    InconsistentCheckpointError,
    consistent_view,
    verify_files,
)
from mtl_nlp.modeling.encoder import ModelLoadError
from mtl_nlp.modeling.hub_checkpoint import first_line, resolve_checkpoint

__all__ = ["PushError", "push_to_hub", "resolve_checkpoint", "snapshot_for_upload"]

# Top-level entries of an output_dir that are never published: resumable states (newest, being
# written, older ones), a save in progress, and the ONNX engine cache (rebuilt where it is used).
NOT_PUSHED = re.compile(
    rf"^({re.escape(STATE_DIR)}|{re.escape(WRITING)}|{re.escape(STATE_DIR)}-\d+|{re.escape(ONNX_DIR)})$|^\."
)
ATTEMPTS = 5  # a run saving during the push: take the files of one save again
# what a task export holds: a transformers model's config, or a peft adapter's (export of a task
# of an adapter checkpoint)
EXPORT_CONFIGS = ("config.json", "adapter_config.json")


def push_to_hub(
    directory: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a checkpoint directory (a run's output_dir, or a folder written by `export_task`)
    to the Hub model repository `repo_id`, creating it when needed; returns the commit's URL.

    Everything but the resumable state, a save in progress and the ONNX cache is uploaded."""
    from huggingface_hub import HfApi

    directory = Path(directory)
    with tempfile.TemporaryDirectory(prefix="mtl-nlp-push-") as scratch:
        folder = Path(scratch) / "upload"
        snapshot_for_upload(directory, folder)
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=folder, repo_type="model", revision=revision,
                commit_message=commit_message or f"Upload {directory.resolve().name} with mtl_nlp",
            )
        except (OSError, ValueError) as exc:  # no token, refused, no connection, a bad repository id
            reason = f"{first_line(exc)}{_hint(exc)}"
            raise PushError(f"cannot push {directory} to {repo_id!r}: {reason}") from exc
    return str(getattr(commit, "commit_url", commit))


class PushError(MtlNlpError, OSError):
    """The Hub refused or could not be reached for an upload."""


def _hint(exc: Exception) -> str:
    from huggingface_hub.errors import LocalTokenNotFoundError

    unauthorised = getattr(getattr(exc, "response", None), "status_code", None) in (401, 403)
    if isinstance(exc, LocalTokenNotFoundError) or unauthorised:
        return " (log in with `hf auth login`, set HF_TOKEN, or pass a token with write access)"
    return ""


def snapshot_for_upload(directory: Path, target: Path) -> None:
    """Fill `target` with links (copies across file systems) of what a push publishes: the
    checkpoint's files of one save, checked against its manifest, and the run's other outputs."""
    if not directory.is_dir():
        raise FileNotFoundError(no_checkpoint_at(directory))
    checkpoint = (directory / CHECKPOINT_CONFIG).is_file() or (directory / PENDING).is_dir()
    if not checkpoint and not any((directory / name).is_file() for name in EXPORT_CONFIGS):
        raise ModelLoadError(
            f"{directory} is neither an mtl_nlp checkpoint ({CHECKPOINT_CONFIG}) nor a task export "
            f"({' or '.join(EXPORT_CONFIGS)}): nothing to push"
        )
    saved: set[str] = set()
    if checkpoint:
        saved = _link_one_save(directory, target)
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if NOT_PUSHED.match(relative.parts[0]) or relative.as_posix() in saved or not path.is_file():
            continue
        _link(path, target / relative)


def _link_one_save(directory: Path, target: Path) -> set[str]:
    """Link the files of the checkpoint's newest complete save into `target`; a save that moves
    files meanwhile is caught by checking the links against the manifest, and taken again."""
    attempt = 1
    while True:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with consistent_view(directory) as view:
            config = json.loads((view / CHECKPOINT_CONFIG).read_text())
            names = [*config.get(MANIFEST, {}), CHECKPOINT_CONFIG]
            for name in names:
                _link((view / name).resolve(), target / name)
        try:
            verify_files(target, config, shown_as=directory)
            return set(names)
        except (InconsistentCheckpointError, FileNotFoundError):
            if attempt == ATTEMPTS:
                raise
            attempt += 1


def _link(source: Path, destination: Path) -> None:
    """A hard link keeps the file's content of this moment even if a save replaces it later."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
