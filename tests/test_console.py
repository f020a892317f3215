"""What a run prints: the toolkit's own lines, the libraries' progress bars and INFO lines only
when asked for."""

import logging

import datasets
import pytest
import transformers

from mtl_nlp.common.console import QUIETED_LIBRARIES, setup_logging, verbose_requested
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.registry import resolve_tasks


@pytest.fixture(autouse=True)
def restore_library_output():
    yield
    for name in QUIETED_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET)
    datasets.enable_progress_bars()
    transformers.utils.logging.enable_progress_bar()


def test_quiet_by_default_and_verbose_on_request(monkeypatch):
    monkeypatch.delenv("MTL_NLP_VERBOSE", raising=False)
    setup_logging()
    assert QUIETED_LIBRARIES == ("accelerate", "datasets", "transformers", "huggingface_hub", "matplotlib")
    assert [logging.getLogger(name).level for name in QUIETED_LIBRARIES] == [logging.WARNING] * 5
    assert not datasets.is_progress_bar_enabled()
    assert not transformers.utils.logging.is_progress_bar_enabled()
    setup_logging(verbose=True)
    assert [logging.getLogger(name).level for name in QUIETED_LIBRARIES] == [logging.INFO] * 5
    assert datasets.is_progress_bar_enabled() and transformers.utils.logging.is_progress_bar_enabled()


@pytest.mark.parametrize(("value", "verbose"), [("1", True), ("true", True), ("0", False), ("", False),
                                                ("false", False)])
def test_the_environment_variable_asks_for_verbose_output(monkeypatch, value, verbose):
    monkeypatch.setenv("MTL_NLP_VERBOSE", value)
    assert verbose_requested() is verbose
    assert verbose_requested(True) is True


def test_one_line_per_prepared_task(tiny_tokenizer, caplog):
    caplog.set_level(logging.INFO, logger="mtl_nlp.data.pipeline")
    prepare_task_data(resolve_tasks(["demo_ner", "demo_sentiment"]), tiny_tokenizer, 32,
                      max_train_examples=50)
    lines = [record.getMessage() for record in caplog.records if record.name == "mtl_nlp.data.pipeline"]
    assert lines == ["task demo_ner: 50 train, 100 validation, 200 test examples; 7 labels",
                     "task demo_sentiment: 50 train, 100 validation, 200 test examples; 2 labels"]
