"""recipes/cls_ner.py loaded as a module, so tests run the recipe's main() in their own process."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "cls_ner.py"


def load_recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cls_ner", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
