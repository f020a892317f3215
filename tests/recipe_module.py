"""recipes/cls_ner.py loaded as a module, so tests run the recipe's main() in their own process;
and runs trained once for a whole test module, copied for each test that changes its files."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "cls_ner.py"


def load_recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cls_ner", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_recipe(argv: list[str]) -> dict:
    """The recipe's main(argv) in this process, with Accelerate's shared state reset before and
    after (a run leaves its precision and device settings behind)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        return load_recipe().main(argv)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def copy_run(trained: Path, destination: Path) -> Path:
    """A copy of a trained run's folder for one test to change (a fresh copy costs milliseconds, a
    fresh run seconds)."""
    shutil.copytree(trained, destination)
    return destination
