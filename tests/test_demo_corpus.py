from mtl_nlp.tasks.demo_corpus import DEMO_DIR, SPLIT_SIZES, demo_corpus


def test_shipped_demo_files_match_the_generator():
    files = demo_corpus()
    assert len(files) == 9
    for relative, content in files.items():
        assert (DEMO_DIR / relative).read_text() == content, relative


def test_demo_split_sizes():
    files = demo_corpus()
    for split, size in SPLIT_SIZES.items():
        assert files[f"demo_sentiment/{split}.tsv"].count("\n") == size + 1
        assert files[f"demo_ner/{split}.txt"].count("\n\n") == size
