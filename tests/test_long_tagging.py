"""Tagging examples longer than max_length: evaluation and the Predictor score every word, through
overlapping windows whose word predictions are merged without losing or repeating an entity."""

import pytest
import torch
from datasets import Dataset, DatasetDict
from seqeval.metrics.sequence_labeling import get_entities

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.common.long_texts import edge_context, merge_word_sequences, plan_word_windows
from mtl_nlp.data.features import encode_splits, windowed_examples
from mtl_nlp.data.labels import build_label_mapper
from mtl_nlp.inference import Predictor, windowed_text_entities
from mtl_nlp.registry import TaskSpec
from mtl_nlp.training.evaluation import tagged_sequences

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
MAX_LENGTH = 64
STRIDE = 16


def test_plan_word_windows_by_hand():
    # 10 words of 1 token, windows of 4 tokens sharing up to 2: [0,4) [2,6) [4,8) [6,10)
    assert plan_word_windows([1] * 10, budget=4, stride=2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    # Whole words only: word 2 (3 tokens) does not fit after words 0-1 (2 tokens) in 4 tokens,
    # and it is too long to be shared in a stride of 1, so the third window starts after it.
    assert plan_word_windows([1, 1, 3, 1], budget=4, stride=1) == [(0, 2), (1, 3), (3, 4)]
    # A word longer than the budget gets a window of its own; no overlap when nothing fits.
    assert plan_word_windows([2, 9, 2], budget=4, stride=1) == [(0, 1), (1, 2), (2, 3)]
    assert plan_word_windows([1, 1, 1], budget=8, stride=2) == [(0, 3)]  # fits: one window
    assert plan_word_windows([], budget=8, stride=2) == [(0, 0)]


def test_merge_takes_each_word_from_the_window_where_it_has_most_context():
    assert edge_context(0, 4, first=True, last=False) == 3  # the text's own start cuts nothing
    assert edge_context(1, 4, first=False, last=False) == 1
    assert edge_context(3, 4, first=False, last=True) == 3
    # Words 0-5 in windows [0,4) and [2,6): word 2 has context 1 in both (the earlier wins),
    # word 3 has 0 in the first window and 1 in the second.
    merged = merge_word_sequences([(0, ["a0", "a1", "a2", "a3"]), (2, ["b2", "b3", "b4", "b5"])])
    assert merged == ["a0", "a1", "a2", "b3", "b4", "b5"]
    with pytest.raises(ValueError, match="uncovered"):
        merge_word_sequences([(0, ["a0"]), (2, ["b2"])])


def long_example() -> tuple[list[str], list[str]]:
    """600 words; PER at the start and at the end, LOC at every word index in between where an
    entity could straddle a window edge (the test checks one does)."""
    filler = ["visited", "the", "acme", "corps", "in", "york"]  # acme/corps/york: several subwords
    words = [filler[i % len(filler)] for i in range(600)]
    tags = ["O"] * 600
    words[:2], tags[:2] = ["anna", "schmidt"], ["B-PER", "I-PER"]
    words[-2:], tags[-2:] = ["anna", "schmidt"], ["B-PER", "I-PER"]
    return words, tags


def edge_entity(words, tags, tokenizer) -> tuple[int, int]:
    """Put a LOC entity across the end of the first window; return its word span."""
    counts = [len(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in words]
    _, end = plan_word_windows(counts, MAX_LENGTH - 2, STRIDE)[0]
    words[end - 1 : end + 1] = ["new", "yorkers"]
    tags[end - 1 : end + 1] = ["B-LOC", "I-LOC"]
    return end - 1, end + 1


def encode(tokenizer, examples):
    spec = TaskSpec(name="ner", type="token_classification", dataset="x", labels=tuple(TAGS))
    raw = {"tokens": [w for w, _ in examples], "tags": [t for _, t in examples]}
    splits = DatasetDict({"train": Dataset.from_dict(raw), "test": Dataset.from_dict(raw)})
    mapper = build_label_mapper(spec, splits["train"], TAGS)
    return encode_splits(spec, splits, tokenizer, mapper, MAX_LENGTH, stride=STRIDE)


def test_evaluation_scores_every_word_of_a_600_word_example(tiny_tokenizer):
    words, tags = long_example()
    start, end = edge_entity(words, tags, tiny_tokenizer)
    short = (["anna", "visited", "york"], ["B-PER", "O", "B-LOC"])
    features = encode(tiny_tokenizer, [(words, tags), short])

    test = features["test"]
    assert windowed_examples(test) == 1
    assert len(test) > 3  # the long example is several windows, the short one a single row
    assert max(test["length"]) <= MAX_LENGTH
    assert len(features["train"]) == 2  # training truncates instead

    # A model that predicts the gold tag in every window: the merged sequences are exactly the
    # gold tags of all 600 words, every entity found once, in both gold and predictions.
    windows = list(zip(test["example_index"], test["word_start"]))
    gold, predicted = tagged_sequences(test["labels"], test["labels"], TAGS, windows)
    assert gold == [tags, short[1]] and predicted == gold
    assert get_entities(gold[0]) == [("PER", 0, 1), ("LOC", start, end - 1), ("PER", 598, 599)]


def test_evaluation_merge_is_what_decides_an_edge_word(tiny_tokenizer):
    """Windows that disagree: every row predicts its gold tags only where the merge rule picks
    it and B-PER elsewhere; the merged prediction is still exactly gold."""
    words, tags = long_example()
    edge_entity(words, tags, tiny_tokenizer)
    test = encode(tiny_tokenizer, [(words, tags)])["test"]
    rows = [[g for g in labels if g != -100] for labels in test["labels"]]
    starts = test["word_start"]
    chosen = merge_word_sequences([(s, [(row, i) for i in range(len(words))]) for row, (s, words)
                                   in enumerate(zip(starts, rows))])
    predictions = []
    for row, labels in enumerate(test["labels"]):
        word = starts[row]
        predicted = []
        for label in labels:
            if label == -100:
                predicted.append(label)
                continue
            picked = chosen[word] == (row, word - starts[row])
            predicted.append(label if picked else TAGS.index("B-PER"))
            word += 1
        predictions.append(predicted)
    windows = list(zip(test["example_index"], starts))
    gold, merged = tagged_sequences(predictions, test["labels"], TAGS, windows)
    assert merged == gold == [tags]
    # Any other choice would show: the unmerged rows hold B-PER in every window overlap.
    assert sum(tag == "B-PER" for row in tagged_sequences(predictions, test["labels"], TAGS)[1]
               for tag in row) > 2


def one_hot_windows(tokenizer, text: str, word_tags: list[str], max_length: int, stride: int):
    """A tokenizer's overflow windows of `text`, with tag probabilities that say each word's
    gold tag on its first subword (in every window that holds it) and B-PER on the rest."""
    encoded = tokenizer(text, truncation=True, max_length=max_length, stride=stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    offsets, word_ids, probabilities = [], [], []
    for window in range(len(encoded["input_ids"])):
        ids = encoded.word_ids(window)
        spans = encoded["offset_mapping"][window]
        scores = torch.full((len(ids), len(TAGS)), 0.05)
        for token, word in enumerate(ids):
            first = word is not None and (token == 0 or ids[token - 1] != word) and (
                spans[token][0] == 0 or text[spans[token][0] - 1] == " ")
            scores[token, TAGS.index(word_tags[word] if first else "B-PER")] = 0.8
        offsets.append([list(pair) for pair in spans])
        word_ids.append(ids)
        probabilities.append(scores)
    return offsets, word_ids, probabilities


def test_predictor_windows_find_entities_at_the_start_the_edge_and_the_end(tiny_tokenizer):
    words, tags = long_example()
    start, end = edge_entity(words, tags, tiny_tokenizer)
    text = " ".join(words)
    found = windowed_text_entities(text, *one_hot_windows(tiny_tokenizer, text, tags, MAX_LENGTH, STRIDE),
                                   TAGS)
    assert [(e["label"], e["text"]) for e in found] == [
        ("PER", "anna schmidt"), ("LOC", "new yorkers"), ("PER", "anna schmidt")]
    assert found[0]["start"] == 0 and found[-1]["end"] == len(text)
    assert found[1]["start"] == len(" ".join(words[:start])) + 1
    assert all(e["score"] == pytest.approx(0.8) for e in found)


@pytest.fixture(scope="module")
def everything_is_a_person(tiny_model_dir, tiny_tokenizer, tmp_path_factory):
    """A tagging model whose head says B-PER for every token, whatever the input."""
    model = MultiTaskModel.from_encoder(
        str(tiny_model_dir), [HeadConfig(name="ner", type="token_classification", labels=TAGS)]
    )
    head = model.heads["ner"]
    linear = [module for module in head.modules() if isinstance(module, torch.nn.Linear)][-1]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor([0.0, 5.0, 0.0, 0.0, 0.0]))
    return Predictor(model, tiny_tokenizer, max_length=MAX_LENGTH, stride=STRIDE, mixed_precision="no")


def test_predictor_tags_every_word_of_a_long_text_once(everything_is_a_person):
    words = [["anna", "visited", "the", "acme", "corps", "in", "york"][i % 7] for i in range(600)]
    text = " ".join(words)
    short = "anna visited york"
    long_answer, short_answer = everything_is_a_person.predict([text, short])
    found = long_answer["ner"]
    assert len(found) == 600  # every word a one-word entity: none lost past max_length, none twice
    assert [e["text"] for e in found] == words
    assert [e["start"] for e in found] == sorted({e["start"] for e in found})
    assert [e["text"] for e in short_answer["ner"]] == ["anna", "visited", "york"]


def test_predictor_refuses_a_stride_that_leaves_no_room(tiny_model_dir, tiny_tokenizer):
    model = MultiTaskModel.from_encoder(
        str(tiny_model_dir), [HeadConfig(name="ner", type="token_classification", labels=TAGS)]
    )
    with pytest.raises(ValueError, match=r"stride must be in \[0, max_length // 2 = 32\), got 40"):
        Predictor(model, tiny_tokenizer, max_length=MAX_LENGTH, stride=40)


def test_config_refuses_a_stride_of_half_max_length_or_more():
    from mtl_nlp.config import ConfigError, load_config

    assert load_config(overrides=["max_length=64", "stride=31"]).stride == 31
    with pytest.raises(ConfigError, match=r"stride must be in \[0, max_length // 2 = 32\), got 32"):
        load_config(overrides=["max_length=64", "stride=32"])
