"""The embedded multilabel demo files and the example config that trains them."""

from pathlib import Path

from mtl_nlp import resolve_tasks
from mtl_nlp.config import load_config
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.tasks.demo_aspects import ASPECTS, ASPECTS_DIR, SPLIT_SIZES, demo_aspects

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_aspect_files_match_the_generator_and_stay_small():
    files = demo_aspects()
    assert sorted(files) == ["test.tsv", "train.tsv", "validation.tsv"]
    for name, content in files.items():
        assert (ASPECTS_DIR / name).read_text() == content, name
        assert content.count("\n") == SPLIT_SIZES[name.removesuffix(".tsv")] + 1
    assert sum(len(content.encode()) for content in files.values()) < 50_000


def test_example_config_trains_the_demo_aspects(tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the config's data_files are relative to the repository
    config = load_config(ROOT / "recipes" / "configs" / "multilabel_task.yaml")
    specs = resolve_tasks(config.tasks)
    assert [(s.name, s.type) for s in specs] == [("demo_sentiment", "classification"),
                                                 ("demo_aspects", "multilabel")]
    data = prepare_task_data(specs[1:], tiny_tokenizer, 32, cache_dir=str(tmp_path))["demo_aspects"]
    assert data.labels == sorted(ASPECTS)
    train = data.splits["train"]
    assert len(train) == SPLIT_SIZES["train"]  # rows naming no aspect are kept, with no labels
    counts = [int(sum(row)) for row in train["labels"]]
    assert set(counts) == {0, 1, 2, 3}
    first = (ASPECTS_DIR / "train.tsv").read_text().splitlines()[1].split("\t")
    named = [label.strip() for label in first[1].split(",") if label.strip()]
    assert [data.labels[i] for i, on in enumerate(train["labels"][0]) if on] == sorted(named)
