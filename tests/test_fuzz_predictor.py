"""Property-based tests of Predictor inputs on a tiny random checkpoint (a tagging and a
classification task, max_length 32 so long texts go through overlapping windows): arbitrary
unicode, control characters, 5,000-character words and texts of hundreds of words get one
well-formed answer each (an empty or whitespace-only text: None for every task); inputs that
are not texts raise PredictorInputError naming the input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.common.errors import MtlNlpError
from mtl_nlp.inference import Predictor, PredictorInputError

FUZZ = dict(derandomize=True, database=None, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory, tiny_model_dir, tiny_tokenizer) -> Predictor:
    """Built once for the module: the tiny random BERT with a NER head and a sentiment head."""
    directory = tmp_path_factory.mktemp("fuzz-predictor") / "ckpt"
    torch.manual_seed(0)
    heads = [
        HeadConfig(name="ner", type="token_classification", labels=TAGS),
        HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"]),
    ]
    MultiTaskModel.from_encoder(str(tiny_model_dir), heads).save_pretrained(
        directory, tokenizer=tiny_tokenizer, extra={"max_length": 32}
    )
    return Predictor.from_pretrained(directory, batch_size=4, mixed_precision="no")


SPECIAL = "\x00\x07\x1b\x7f\x85\u200b\u200d\u2028\ufeff\ufffd\xa0\u3000 \t\n\r.,'\"-東京é🍕İß"
CHARS = st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(SPECIAL))
KNOWN = st.sampled_from(["anna", "schmidt", "visited", "new", "yorkers", "Zürich", "U.S.", "the", "film"])
SHORT_TEXTS = st.one_of(
    st.text(CHARS, max_size=40),
    st.sampled_from(["", " ", "   ", "\t\n", "\u3000", "\x00", "\u200b\u200b"]),
    st.lists(st.one_of(KNOWN, st.text(CHARS, min_size=1, max_size=6)), max_size=12).map(" ".join),
)
# A 5,000-character run of CJK characters or punctuation is 5,000 tokens: ~200 windows, ~1.5 s.
TEXTS = st.one_of(
    SHORT_TEXTS,
    st.lists(KNOWN, min_size=40, max_size=300).map(" ".join),  # several windows of 32 tokens
    st.builds(lambda text, size: (text * size)[:size], st.text(CHARS, min_size=1, max_size=3),
              st.integers(1000, 5000)),  # one very long word, or a long run of one character
)


def check_answer(text: str, answer: dict) -> None:
    assert set(answer) == {"ner", "sentiment"}
    if not text.strip():  # no text: no answer (None), never a confident label
        assert answer == {"ner": None, "sentiment": None}
        event("blank text")
        return
    assert answer["sentiment"]["label"] in ("negative", "positive")
    assert 0.0 <= answer["sentiment"]["score"] <= 1.0
    previous_end = 0
    for entity in answer["ner"]:
        assert previous_end <= entity["start"] < entity["end"] <= len(text), entity
        assert entity["text"] == text[entity["start"] : entity["end"]]
        assert entity["label"] in ("PER", "LOC")
        assert 0.0 <= entity["score"] <= 1.0
        previous_end = entity["end"]
    event("entities found" if answer["ner"] else "no entity")


@settings(max_examples=50, **FUZZ)
@given(texts=st.lists(TEXTS, min_size=1, max_size=6))
def test_every_text_gets_one_well_formed_answer(predictor, texts):
    """50 batches of 1-6 texts (random unicode with control and zero-width characters, empty and
    whitespace-only texts, texts of 40-300 words read as windows, words of 1,000-5,000
    characters): one answer per text in order; every entity has 0 <= start < end <= len(text),
    text == input[start:end], a known label and a score in [0, 1]; entities do not overlap."""
    answers = predictor.predict(texts)
    assert isinstance(answers, list) and len(answers) == len(texts)
    for text, answer in zip(texts, answers):
        check_answer(text, answer)


@settings(max_examples=20, **FUZZ)
@given(texts=st.lists(SHORT_TEXTS, min_size=0, max_size=7), chunk=st.integers(1, 4))
def test_predict_stream_answers_every_text(predictor, texts, chunk):
    """20 streams of 0-7 short texts in chunks of 1-4: one well-formed answer per text, in order."""
    answers = list(predictor.predict_stream(iter(texts), chunk_size=chunk))
    assert len(answers) == len(texts)
    for text, answer in zip(texts, answers):
        check_answer(text, answer)


NOT_TEXTS = st.one_of(
    st.none(), st.integers(), st.floats(), st.booleans(), st.binary(max_size=5),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=3),
    st.tuples(st.text(max_size=3)), st.tuples(st.text(max_size=3), st.integers()),
    st.tuples(st.text(max_size=3), st.text(max_size=3), st.text(max_size=3)),
    st.tuples(st.text(max_size=3), st.text(max_size=3)),  # a pair: this model has no pair task
    st.lists(st.text(max_size=3), min_size=2, max_size=2),  # a 2-item list counts as a pair
)


@settings(max_examples=150, **FUZZ)
@given(before=st.lists(TEXTS, max_size=3), bad=NOT_TEXTS, after=st.lists(st.text(max_size=5), max_size=3))
def test_an_input_that_is_not_a_text_raises_predictor_input_error(predictor, before, bad, after):
    """150 batches holding one input that is not a text (None, numbers, bools, bytes, dicts,
    lists, tuples of 1-3 items, text pairs this model cannot take) among texts: PredictorInputError
    (an MtlNlpError, also a TypeError and a ValueError) naming that input's position."""
    with pytest.raises(PredictorInputError, match=rf"input {len(before)} ") as caught:
        predictor.predict([*before, bad, *after])
    assert isinstance(caught.value, MtlNlpError) and isinstance(caught.value, TypeError)


@pytest.mark.parametrize("single", [3, None, 2.5, {"anna": 1}, {"anna"}],
                         ids=["int", "None", "float", "dict", "set"])
def test_a_single_input_that_is_not_a_text_raises_predictor_input_error(predictor, single):
    with pytest.raises(PredictorInputError, match="input 0 is"):
        predictor.predict(single)


def test_a_text_with_a_lone_surrogate_is_refused_naming_the_input(predictor):
    with pytest.raises(PredictorInputError, match="input 1"):
        predictor.predict(["anna", "caf\ud800"])
    with pytest.raises(PredictorInputError, match="input 0 is not valid unicode: a lone surrogate"):
        predictor.predict(("caf\udcff", "anna"))
