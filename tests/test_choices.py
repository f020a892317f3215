"""Each list of names a user chooses from has one home (mtl_nlp.common.choices): the config, the
command line and the modules that implement the choices all take it from there."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mtl_nlp.cli import build_parser
from mtl_nlp.common import choices
from mtl_nlp.config import CHOICES, WeightingConfig
from mtl_nlp.data.sampling import task_probabilities
from mtl_nlp.training.weighting import METHODS, build_weighting


def _option_choices(command: str, option: str) -> tuple[str, ...]:
    subcommands = next(action for action in build_parser()._actions if action.dest == "command")
    parser = subcommands.choices[command]
    return tuple(next(action for action in parser._actions if option in action.option_strings).choices)


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_the_command_line_offers_the_engines_and_precisions_of_the_library(command):
    assert _option_choices(command, "--backend") == choices.BACKENDS == ("torch", "torch-compile", "onnx",
                                                                         "onnx-int8")
    assert _option_choices(command, "--precision") == choices.PRECISIONS == CHOICES["mixed_precision"]


def test_weighting_implements_exactly_the_configurable_methods_and_which_need_task_gradients():
    assert set(METHODS) == set(choices.WEIGHTING_METHODS) == set(CHOICES["weighting.method"])
    sizes = {"a": 10, "b": 30}
    needs = {method for method in choices.WEIGHTING_METHODS
             if build_weighting(WeightingConfig(method=method), sizes, {}).needs_task_gradients}
    assert needs == set(choices.GRADIENT_METHODS) == {"pcgrad", "cagrad"}


def test_every_sampling_strategy_gives_probabilities_over_the_tasks():
    assert CHOICES["sampling.strategy"] == choices.SAMPLING_STRATEGIES
    for strategy in choices.SAMPLING_STRATEGIES:
        probabilities = task_probabilities({"a": 10, "b": 30}, strategy)
        assert set(probabilities) == {"a", "b"} and sum(probabilities.values()) == pytest.approx(1.0)


def test_the_command_line_parses_without_importing_torch():
    code = ("import sys; from mtl_nlp.cli import build_parser; build_parser().parse_args(['predict', 'x']); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
