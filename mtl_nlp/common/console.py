"""What a run prints on the console.

By default: the toolkit's own INFO lines (one per task's data, one per evaluation and save), the
training bar, and only warnings from the libraries underneath, whose progress bars (three
`datasets.map` bars per split, weight loading and shard writing) and per-file INFO lines (seven
for every Accelerate state save) would bury them. `verbose` (the `--verbose` flag, or
MTL_NLP_VERBOSE=1 for launchers that start the recipe themselves) brings all of it back.
"""

from __future__ import annotations

import logging
import os

VERBOSE_VARIABLE = "MTL_NLP_VERBOSE"
QUIETED_LIBRARIES = ("accelerate", "datasets", "transformers", "huggingface_hub", "matplotlib")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def verbose_requested(flag: bool = False) -> bool:
    """The `--verbose` flag, or MTL_NLP_VERBOSE set to anything but empty, 0 or false."""
    return flag or os.environ.get(VERBOSE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def setup_logging(verbose: bool = False) -> None:
    """INFO for mtl_nlp; the libraries' progress bars and INFO lines only when `verbose`."""
    import datasets
    import transformers

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    verbose = verbose_requested(verbose)
    for name in QUIETED_LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    if verbose:
        datasets.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
    else:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
