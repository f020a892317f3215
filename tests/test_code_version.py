"""Cached features follow the code: datasets keys a module-level function by its name, so without
the data code's version in the key an upgrade would train on features cached by the old code."""

from mtl_nlp import TaskSpec
from mtl_nlp.data import code_version
from mtl_nlp.data.features import IGNORE_INDEX
from mtl_nlp.data.pipeline import prepare_task_data


def train_labels(spec, tokenizer, cache_dir):
    data = prepare_task_data([spec], tokenizer, max_length=32, cache_dir=str(cache_dir))["ner"]
    return data.splits["train"]["labels"]


def test_changed_data_code_recomputes_cached_features(tmp_path, tiny_tokenizer, monkeypatch):
    path = tmp_path / "train.txt"
    path.write_text("Anna B-PER\nvisited O\nU.S. B-LOC\n\nAnna B-PER\n")
    spec = TaskSpec(name="ner", type="token_classification", format="conll",
                    data_files={"train": str(path), "validation": str(path)})
    cache = tmp_path / "cache"
    first = train_labels(spec, tiny_tokenizer, cache)
    assert any(label != IGNORE_INDEX for row in first for label in row)

    # New alignment code, same version: datasets hands back the features of the old code.
    def ignore_all(word_ids, *args):
        return [IGNORE_INDEX] * len(word_ids)

    monkeypatch.setattr("mtl_nlp.data.features.align_piece_labels", ignore_all)
    assert train_labels(spec, tiny_tokenizer, cache) == first
    # A new version of the data code (as any edit of its sources gives) recomputes them.
    monkeypatch.setattr(code_version, "DATA_CODE_VERSION", "edited")
    assert train_labels(spec, tiny_tokenizer, cache) == [[IGNORE_INDEX] * len(row) for row in first]


def test_data_code_version_covers_the_modules_that_shape_features():
    names = {path.name for path in code_version.SOURCES}
    assert {"features.py", "word_pieces.py", "labels.py", "conll.py", "loading.py", "tokenizing.py",
            "long_texts.py"} <= names
    assert len(code_version.DATA_CODE_VERSION) == 64
