"""The `mtl-nlp` command: its parser (cli.parser), what each command does (cli.commands) and
`python -m mtl_nlp.cli`."""

from mtl_nlp.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
