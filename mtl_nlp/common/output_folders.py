"""The one check every command makes before it writes a folder: it never writes over a checkpoint,
its own source above all, nor into a folder that holds other files, unless the user said
`--overwrite`; and the refusal names what is there."""

from __future__ import annotations

from pathlib import Path

from mtl_nlp.common.errors import MtlNlpError
from mtl_nlp.common.run_files import CHECKPOINT_CONFIG

LISTED_FILES = 8
# A trained model's own files: a run's checkpoint (mtl_nlp.json), or a transformers model folder.
MODEL_FILES = (CHECKPOINT_CONFIG, "config.json", "model.safetensors", "pytorch_model.bin")


class OutputFolderError(MtlNlpError, FileExistsError):
    """A folder a command would write into that holds a checkpoint or other files."""


def check_output_folder(folder: str | Path, overwrite: bool = False, source: str | Path | None = None,
                        option: str = "--overwrite") -> Path:
    """`folder`, when a command may write into it: it does not exist, or is empty, or `overwrite`
    allows it. Never the command's own `source` checkpoint, with or without `overwrite`."""
    folder = Path(folder)
    if source is not None and folder.exists() and Path(source).exists() and folder.resolve() == Path(
            source).resolve():
        raise OutputFolderError(f"{folder} is the checkpoint this command reads: write to another folder")
    if not folder.exists() or overwrite:
        return folder
    if not folder.is_dir():
        raise OutputFolderError(f"{folder} is a file, not a folder: give a folder to write to")
    present = sorted(path.name for path in folder.iterdir())
    if not present:
        return folder
    shown = ", ".join(present[:LISTED_FILES]) + (f" and {len(present) - LISTED_FILES} more"
                                                   if len(present) > LISTED_FILES else "")
    kind = "a checkpoint" if any(name in MODEL_FILES for name in present) else "files"
    raise OutputFolderError(f"{folder} already holds {kind} ({shown}): give an empty or new folder, "
                            f"or {option} to write over it")
