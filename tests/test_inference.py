import io
import json
import sys

import pytest
import torch

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.cli import main as cli_main
from mtl_nlp.inference import Predictor, entities, first_token_of_each_word
from mtl_nlp.spans import bio_spans, split_words

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SENTENCE = "Anna Schmidt visited New Yorkers, in the U.S. today."


def test_split_words_keeps_abbreviations_and_hyphenated_words():
    text = "U.S. firm New York-based, 3.5 days."
    assert [text[s:e] for s, e in split_words(text)] == [
        "U.S.", "firm", "New", "York-based", ",", "3.5", "days", "."
    ]


def test_split_words_separates_clitics_like_conll():
    text = "Germany's exports don't fall, O'Neill's firm can’t; Jones' shares"
    assert [text[s:e] for s, e in split_words(text)] == [
        "Germany", "'s", "exports", "do", "n't", "fall", ",", "O'Neill", "'s", "firm", "ca", "n’t", ";",
        "Jones", "'", "shares",
    ]


def test_bio_spans_conlleval_style():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "B-ORG", "I-ORG", "I-PER"]
    assert bio_spans(tags) == [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("ORG", 5, 7), ("PER", 7, 8)]


def test_tokens_whose_offsets_include_the_leading_space_belong_to_the_next_word():
    words = split_words("Anna Schmidt  x")  # (0, 4), (5, 12), (14, 15)
    offsets = [[0, 0], [0, 4], [4, 8], [8, 12], [12, 15], [0, 0]]
    assert first_token_of_each_word(words, offsets) == {0: 1, 1: 2, 2: 4}


def test_entity_offsets_on_a_hand_made_sentence(tiny_tokenizer):
    encoded = tiny_tokenizer(SENTENCE, return_offsets_mapping=True)
    tokens = tiny_tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens[:10] == ["[CLS]", "an", "##na", "schm", "##idt", "visited", "new", "york", "##er", "##s"]
    offsets = [list(pair) for pair in encoded["offset_mapping"]]
    words = split_words(SENTENCE)
    first = first_token_of_each_word(words, offsets)
    assert [first[w] for w in range(5)] == [1, 3, 5, 6, 7]
    # Tag the first subword of each word; later subwords get a contradicting tag that must be ignored.
    # Anna Schmidt / New Yorkers / U.S.
    word_tags = {0: "B-PER", 1: "I-PER", 3: "B-LOC", 4: "I-LOC", 8: "B-LOC"}
    probabilities = torch.full((len(tokens), len(TAGS)), 0.01)
    probabilities[:, 0] = 0.9
    for token in range(len(tokens)):
        probabilities[token, 1] = 0.95 if token in (2, 4, 8, 9) else 0.01  # non-first subwords say B-PER
        probabilities[token, 0] = 0.0 if token in (2, 4, 8, 9) else 0.9
    for word, tag in word_tags.items():
        probabilities[first[word]] = 0.0
        probabilities[first[word], TAGS.index(tag)] = 0.8
    found = entities(SENTENCE, offsets, probabilities, TAGS)
    assert found == [
        {"label": "PER", "text": "Anna Schmidt", "start": 0, "end": 12, "score": pytest.approx(0.8)},
        {"label": "LOC", "text": "New Yorkers", "start": 21, "end": 32, "score": pytest.approx(0.8)},
        {"label": "LOC", "text": "U.S.", "start": 41, "end": 45, "score": pytest.approx(0.8)},
    ]


@pytest.fixture
def checkpoint(tiny_model_dir, tiny_tokenizer, tmp_path):
    torch.manual_seed(0)
    heads = [
        HeadConfig(name="ner", type="token_classification", labels=TAGS),
        HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"]),
    ]
    MultiTaskModel.from_encoder(str(tiny_model_dir), heads).save_pretrained(
        tmp_path / "ckpt", tokenizer=tiny_tokenizer, extra={"max_length": 32}
    )
    return tmp_path / "ckpt"


def test_predictor_answers_every_task_in_input_order(checkpoint):
    predictor = Predictor.from_pretrained(checkpoint, batch_size=2, mixed_precision="no")
    texts = ["the film is dull .", SENTENCE, "", "anna"]
    results = predictor.predict(texts)
    # Batched (padded, length-sorted) and one-by-one predictions agree up to float rounding.
    for text, result in zip(texts, results):
        alone = predictor.predict(text)
        assert alone["sentiment"]["label"] == result["sentiment"]["label"]
        assert alone["sentiment"]["score"] == pytest.approx(result["sentiment"]["score"], abs=1e-5)
        assert [(e["label"], e["start"], e["end"]) for e in alone["ner"]] == [
            (e["label"], e["start"], e["end"]) for e in result["ner"]
        ]
    for text, result in zip(texts, results):
        assert set(result) == {"ner", "sentiment"}
        assert result["sentiment"]["label"] in ("negative", "positive")
        assert 0.0 <= result["sentiment"]["score"] <= 1.0
        for entity in result["ner"]:
            assert text[entity["start"] : entity["end"]] == entity["text"]
            assert entity["label"] in ("PER", "LOC")


def test_predictor_runs_the_encoder_once_per_batch(checkpoint):
    predictor = Predictor.from_pretrained(checkpoint, batch_size=4, mixed_precision="no")
    calls = []
    hook = predictor.model.encoder.register_forward_hook(lambda *args: calls.append(1))
    predictor.predict(["a", "b", "c", "d", "e"])
    hook.remove()
    assert len(calls) == 2


def test_predict_stream_yields_in_order_holding_one_chunk_at_a_time(checkpoint):
    predictor = Predictor.from_pretrained(checkpoint, batch_size=4, mixed_precision="no")
    texts = [f"anna visited new york {'again ' * (i % 5)}." for i in range(23)]
    pulled = []

    def source():
        for text in texts:
            pulled.append(text)
            yield text

    stream = predictor.predict_stream(source(), chunk_size=6)
    first = next(stream)
    assert len(pulled) == 6  # one chunk read, not the whole input
    # Other batch compositions pad differently: equal up to float rounding.
    assert rounded([first, *stream]) == rounded(predictor.predict(texts))


def rounded(value):
    """`value` with every float rounded to 4 places, through dicts and lists."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def test_predict_stream_counts_inputs_across_chunks_in_errors(checkpoint):
    predictor = Predictor.from_pretrained(checkpoint, mixed_precision="no")
    with pytest.raises(TypeError, match="input 9 is NoneType"):
        list(predictor.predict_stream(["anna"] * 9 + [None], chunk_size=4))
    with pytest.raises(KeyError, match="unknown task"):
        predictor.predict_stream(iter(()), tasks=["pos"])  # at the call, before any input is read


def test_predictor_task_subset_and_unknown_task(checkpoint):
    predictor = Predictor.from_pretrained(checkpoint, mixed_precision="no")
    assert set(predictor.predict("anna", tasks=["sentiment"])) == {"sentiment"}
    with pytest.raises(KeyError, match=r"unknown task\(s\) \['pos'\]; this model has: ner, sentiment"):
        predictor.predict("anna", tasks=["pos"])


def test_cli_predict_from_file_and_stdin(checkpoint, tmp_path, capsys, monkeypatch):
    source = tmp_path / "in.txt"
    source.write_text("the film is dull .\nAnna visited New York .\n")
    assert cli_main(["predict", str(checkpoint), str(source)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and set(json.loads(lines[1])) == {"ner", "sentiment"}
    monkeypatch.setattr(sys, "stdin", io.StringIO("anna\n"))
    assert cli_main(["predict", str(checkpoint), "--tasks", "sentiment"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"sentiment"}


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli_main(["predict", str(tmp_path / "missing")]) == 2
    assert "checkpoint directory does not exist" in capsys.readouterr().err


def test_cli_lists_tasks(capsys):
    assert cli_main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "conll2003" in out and "token_classification" in out and "ag_news" in out
