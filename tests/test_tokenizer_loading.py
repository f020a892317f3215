import json

from tokenizers import ByteLevelBPETokenizer
from transformers import AutoTokenizer, RobertaTokenizer

from mtl_nlp import load_tokenizer

WORDS = ["John", "lives", "in", "York"]


def save_byte_level_tokenizer(directory) -> None:
    """A tiny RoBERTa-style (byte-level BPE) tokenizer saved as a model folder would hold it."""
    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator([" ".join(WORDS)] * 10, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(merge.split()) if isinstance(merge, str) else tuple(merge) for merge in model["merges"]]
    RobertaTokenizer(vocab=model["vocab"], merges=merges).save_pretrained(directory)


def test_byte_level_tokenizer_splits_pretokenized_words_like_raw_text(tmp_path):
    save_byte_level_tokenizer(tmp_path / "roberta")
    tokenizer = load_tokenizer(str(tmp_path / "roberta"))
    from_words = tokenizer(WORDS, is_split_into_words=True).tokens()
    from_text = tokenizer(" ".join(WORDS)).tokens()
    assert from_words == from_text == ["<s>", "ĠJohn", "Ġlives", "Ġin", "ĠYork", "</s>"]

    # A checkpoint saves the tokenizer; reloading it (as Predictor does) keeps the setting.
    tokenizer.save_pretrained(tmp_path / "checkpoint")
    assert AutoTokenizer.from_pretrained(tmp_path / "checkpoint").add_prefix_space is True


def test_wordpiece_tokenizer_is_loaded_unchanged(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    assert tokenizer(["anna", "schmidt"], is_split_into_words=True).tokens() == [
        "[CLS]", "an", "##na", "schm", "##idt", "[SEP]"]
