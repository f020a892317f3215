"""Where a checkpoint named by a path or a Hugging Face Hub repository id lives on disk."""

from __future__ import annotations

from pathlib import Path

from mtl_nlp.common.errors import no_checkpoint_at
from mtl_nlp.modeling.encoder import ModelLoadError, looks_local


def resolve_checkpoint(
    name_or_path: str | Path, revision: str | None = None, token: str | None = None
) -> Path:
    """The local directory of a checkpoint: `name_or_path` itself when it is a Path, exists on
    disk or has a path's shape, else the Hub model repository of that id, downloaded once into the
    Hugging Face cache."""
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or path.exists() or looks_local(name_or_path):
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), revision=revision, token=token))
    except (OSError, ValueError) as exc:  # not found, gated, offline, no connection, bad revision
        raise ModelLoadError(no_checkpoint_at(name_or_path, first_line(exc))) from exc


def first_line(exc: Exception) -> str:
    """The first line of an error's message (Hub errors append URLs and request ids)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
