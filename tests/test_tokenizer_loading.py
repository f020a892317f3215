import json
import re
import shutil

import pytest
from tokenizers import ByteLevelBPETokenizer, Tokenizer, models, normalizers, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast, RobertaTokenizer

from mtl_nlp import RunConfig, load_tokenizer
from mtl_nlp.modeling import ModelLoadError
from mtl_nlp.modeling.encoder import check_encoder
from mtl_nlp.training import train_from_config

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


def test_an_encoder_folder_without_its_tokenizer_is_refused_before_training(tiny_model_dir, tmp_path):
    """transformers builds a 5-token vocabulary for a model folder without tokenizer files; a run
    on it would train on [UNK] alone. check_encoder, which train and affinity call before reading
    any data, refuses it and names what the folder lacks."""
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, folder / name)
    message = (f"the tokenizer of '{folder}' reads 13 of the 13 pieces of a plain English sentence as its "
               f"unknown token '[UNK]', so a model would train on unknown tokens; {folder} holds no "
               "tokenizer files (one of tokenizer.json, vocab.txt,")
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        check_encoder(str(folder), 64)
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        train_from_config(RunConfig(model=str(folder), output_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_a_tokenizer_that_reads_most_words_as_unknown_is_refused(tmp_path):
    """A vocabulary of a few words (a tokenizer built for another language, say) reads most of the
    probe sentence as [UNK]: refused, though the folder has its tokenizer files."""
    vocabulary = {token: index for index, token in enumerate(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "new", "for", "on"])}
    backend = Tokenizer(models.WordPiece(vocabulary, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]").save_pretrained(tmp_path / "small")
    with pytest.raises(ModelLoadError, match="reads 8 of the 13 pieces of a plain English sentence as its "
                                             "unknown token '\\[UNK\\]', so a model would train on unknown "
                                             "tokens$"):
        load_tokenizer(str(tmp_path / "small"))
