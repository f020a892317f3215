"""Shared fixtures: a tiny random BERT and tokenizer built offline, and a clean task registry."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from process_group import ALL_CORES_VARIABLE
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerFast

from mtl_nlp.registry import store
from mtl_nlp.tasks.demo_corpus import DEMO_DIR

# The benchmark pieces live beside the recipes, outside the installed package: `benchmarks.*`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipes"))



def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker keeps to its own share of the cores (and so does every
    process it starts, but the process groups of process_group.py, which share out every core):
    training sizes its torch threads to the cores it may use, so workers side by side do not
    oversubscribe the machine, which slows small CPU runs far more than 2x."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count or not hasattr(os, "sched_setaffinity"):
        return
    cores, index, count = sorted(os.sched_getaffinity(0)), int(worker.removeprefix("gw")), int(count)
    if count > 1 and len(cores) >= count:
        os.environ[ALL_CORES_VARIABLE] = ",".join(map(str, cores))  # for the process groups tests launch
        share = set(cores[index::count])
        os.sched_setaffinity(0, share)
        torch.set_num_threads(len(share))


# The modules that launch process groups or compile engines, the longest by far: collected first,
# so that xdist hands them out first and the short ones fill in around them (a long module
# handed out last would run alone at the end while the other cores wait).
LONGEST_FIRST = ("test_strategies_distributed", "test_fully_sharded", "test_families", "test_recipe_e2e",
                 "test_multi_head", "test_cli", "test_distillation", "test_backends", "test_state_files",
                 "test_finetune")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))  # stable: order kept within


SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Words split into several subwords on purpose, to exercise first-subword label alignment.
SUBWORDS = ["an", "##na", "york", "##er", "##s", "schm", "##idt", "acme", "corp", "##s"]


def demo_vocabulary() -> list[str]:
    """Special tokens, a few multi-piece words, then every lower-cased demo word and character."""
    vocabulary = list(SPECIAL) + SUBWORDS
    words: set[str] = set()
    for path in sorted(DEMO_DIR.rglob("*.*")):
        for token in path.read_text().lower().replace("\t", " ").split():
            words.update(piece for piece in _basic_split(token) if piece)
    for word in sorted(words - {"anna", "schmidt", "yorker"}):
        vocabulary.append(word)
    letters = sorted({ch for word in words for ch in word})
    vocabulary += [ch for ch in letters] + [f"##{ch}" for ch in letters]
    return list(dict.fromkeys(vocabulary))


def _basic_split(token: str) -> list[str]:
    pieces, current = [], ""
    for ch in token:
        if ch.isalnum():
            current += ch
        else:
            pieces += [current, ch]
            current = ""
    return pieces + [current]


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(demo_vocabulary())}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=128,
    )


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def pair_tokenizer(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer):
    """The tiny tokenizer returning token_type_ids as BERT's does (segment 1 = the second text)."""
    directory = tmp_path_factory.mktemp("pair-tokenizer")
    tiny_tokenizer.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(
        directory, model_input_names=["input_ids", "token_type_ids", "attention_mask"]
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with its tokenizer, saved to a folder."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    tiny_tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def recipe():
    """recipes/cls_ner.py as a module, with Accelerate's shared state reset before and after (a run
    in this process leaves its precision and device settings behind)."""
    from accelerate.state import AcceleratorState
    from recipe_module import load_recipe

    AcceleratorState._reset_state(reset_partial_state=True)
    yield load_recipe()
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(autouse=True, scope="module")
def restore_registry_of_module():
    """Tasks a module-scoped run registers are gone after the module (autouse fixtures of a scope
    run before its other fixtures, so the snapshot is taken before any of them registers)."""
    saved = dict(store._REGISTRY)
    yield
    store._REGISTRY.clear()
    store._REGISTRY.update(saved)


@pytest.fixture(autouse=True)
def restore_registry():
    """Each test sees the built-in registry and leaves it as it found it."""
    saved = dict(store._REGISTRY)
    yield
    store._REGISTRY.clear()
    store._REGISTRY.update(saved)
