"""Train one shared encoder on several tasks (NER, sentiment, topic) and score each.

    accelerate launch recipes/cls_ner.py [--config recipes/configs/FILE.yaml] [key=value ...]
    mtl-nlp train [--config recipes/configs/FILE.yaml] [key=value ...]     # the same, installed

With no arguments it trains on the embedded demo tasks with the default encoder. The best
checkpoint (by mean validation score) ends up in output_dir with metrics.json from the final
evaluation on each task's test split.
"""

from __future__ import annotations

import argparse
import sys

from mtl_nlp.common.console import setup_logging
from mtl_nlp.common.errors import run_reporting_user_errors
from mtl_nlp.config import load_run_config
from mtl_nlp.training import train_from_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config file (see recipes/configs/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=3e-5")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of configuration errors too")
    parser.add_argument("--verbose", action="store_true", help="show the progress bars and INFO lines of "
                        "datasets, transformers and accelerate (also MTL_NLP_VERBOSE=1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    config = load_run_config(args.config, args.overrides)
    setup_logging(args.verbose)
    return train_from_config(config)


if __name__ == "__main__":
    # A mistake in the config or the data ends in its one-line message and exit code 2.
    code = run_reporting_user_errors(main, prog="cls_ner.py", debug="--debug" in sys.argv[1:])
    sys.exit(code if isinstance(code, int) else 0)
