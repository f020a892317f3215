"""Cache keys that follow the code: datasets hashes a module-level function by its name, not its
code, so after an upgrade of the toolkit that changes tokenization or label alignment, `map` and
`filter` would hand back features cached by the old code. Every transform of the data pipeline
is wrapped in `Versioned`, whose hash includes a digest of the source files that shape features.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent
# Everything that decides what a feature row holds: the data package and the leaf modules it uses.
SOURCES = sorted((PACKAGE / "data").glob("*.py")) + [
    PACKAGE / "common" / name for name in ("tokenizing.py", "long_texts.py")
]


def _digest(paths: list[Path]) -> str:
    hashed = hashlib.sha256()
    for path in paths:
        hashed.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return hashed.hexdigest()


DATA_CODE_VERSION = _digest(SOURCES)


class Versioned:
    """`function` with `kwargs` bound, for datasets.map/filter; it hashes (datasets pickles its
    attributes by value) with the version of the data code, so new code never reads old caches."""

    def __init__(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.function = functools.partial(function, *args, **kwargs)
        self.code_version = DATA_CODE_VERSION

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)
