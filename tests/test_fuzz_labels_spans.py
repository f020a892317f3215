"""Property-based tests of word-label alignment (first subword of each word) with synthetic word
ids and with the tiny BERT tokenizer on random unicode words, and of BIO span decoding."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mtl_nlp.common.errors import DataError
from mtl_nlp.common.tokenizing import IGNORE_INDEX
from mtl_nlp.data.features import align_word_labels
from mtl_nlp.inference.entities import bio_spans

FUZZ = dict(derandomize=True, database=None, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_LENGTH = 32


def check_alignment(word_ids: list[int | None], word_labels: list[int], aligned: list[int]) -> None:
    """Exactly one label per word present in `word_ids`, that word's own, at its first subword;
    IGNORE_INDEX everywhere else (special tokens, later subwords)."""
    assert len(aligned) == len(word_ids)
    first = {}
    for position, word in enumerate(word_ids):
        if word is not None:
            first.setdefault(word, position)
    for position, (word, label) in enumerate(zip(word_ids, aligned)):
        if word is not None and first[word] == position:
            assert label == word_labels[word]
        else:
            assert label == IGNORE_INDEX
    assert sum(label != IGNORE_INDEX for label in aligned) == len(first)


@st.composite
def tokenized(draw) -> tuple[list[int | None], list[int]]:
    """Word ids as a fast tokenizer gives them: [None] + each word's subwords in order (0 to 4 of
    them: a word may vanish) + [None], possibly cut by truncation, and one label per word."""
    counts = draw(st.lists(st.integers(0, 4), max_size=12))
    ids = [word for word, count in enumerate(counts) for _ in range(count)]
    ids = ids[: draw(st.integers(0, len(ids)))]
    labels = draw(st.lists(st.integers(0, 8), min_size=len(counts), max_size=len(counts)))
    return [None, *ids, None], labels


@settings(max_examples=500, **FUZZ)
@given(case=tokenized())
def test_alignment_gives_each_present_word_one_label_at_its_first_subword(case):
    """500 synthetic word-id sequences (0-12 words of 0-4 subwords each, truncated anywhere):
    align_word_labels gives exactly one non-ignored label per word present, equal to its label,
    at its first subword."""
    word_ids, labels = case
    check_alignment(word_ids, labels, align_word_labels(word_ids, labels))


# Words made of characters the BERT normalizer drops or splits on (control characters, zero-width
# and replacement characters, unicode spaces, punctuation) and of ordinary and unknown letters.
SPECIAL = "\x00\x07\x1b\x7f\u200b\u200d\u2060\ufeff\ufffd\xa0\u3000\u2028 \t\n\r.,-'\"()東京é🍕"
WORD_CHARS = st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(SPECIAL))
WORDS = st.one_of(
    st.text(WORD_CHARS, min_size=0, max_size=8),
    st.sampled_from(["anna", "schmidt", "visited", "new", "yorkers", "\u200b", "\x00", "\ufffd", " ", ""]),
    st.builds(lambda text, size: (text * size)[:size], st.text(WORD_CHARS, min_size=1, max_size=3),
              st.integers(200, 5000)),
)


@settings(max_examples=150, **FUZZ)
@given(words=st.lists(WORDS, min_size=1, max_size=10), data=st.data())
def test_real_tokenizer_words_align_and_empty_words_vanish(tiny_tokenizer, words, data):
    """150 lists of 1-10 random unicode words (control characters, zero-width spaces, 5,000-char
    words, empty strings) through the tiny BERT tokenizer with is_split_into_words and truncation
    to 32 tokens: word ids never go backwards, the alignment property holds, and a word is missing
    from the word ids before the truncation point only when the tokenizer turns it alone into no
    token (e.g. "\\u200b", "\\x00", " ")."""
    labels = data.draw(st.lists(st.integers(0, 4), min_size=len(words), max_size=len(words)))
    encoded = tiny_tokenizer(words, is_split_into_words=True, truncation=True, max_length=MAX_LENGTH)
    word_ids = encoded.word_ids()
    present = [word for word in word_ids if word is not None]
    assert present == sorted(present)
    check_alignment(word_ids, labels, align_word_labels(word_ids, labels))
    last = max(present, default=-1)
    for index, word in enumerate(words[: last + 1]):
        alone = tiny_tokenizer(word, add_special_tokens=False)["input_ids"]
        assert (index in present) == bool(alone), (index, word)
        if not alone:
            event("a word with no token")


@settings(max_examples=30, **FUZZ)
@given(sentences=st.lists(st.lists(WORDS, min_size=1, max_size=8), min_size=1, max_size=4), data=st.data())
def test_tagging_features_of_random_words_do_not_crash(tiny_tokenizer, sentences, data):
    """30 small train splits of random unicode sentences through encode_splits (datasets.map,
    truncation to 32 tokens): no exception; an example is kept unless a word is empty or
    whitespace only, and each kept row labels exactly its words that have a token: the word's tag
    on its first token, and I-PER (inside an entity) or O on the first token of each further piece
    the tokenizer splits it into when reading raw text (a sentence made only of words the
    tokenizer drops, e.g. ["\\u200b"], is kept with no scored position: see the report)."""
    from datasets import Dataset, DatasetDict

    from mtl_nlp import TaskSpec
    from mtl_nlp.data.features import encode_splits
    from mtl_nlp.data.labels import LabelMapper

    tags = ["O", "B-PER", "I-PER"]
    rows = [data.draw(st.lists(st.sampled_from(tags), min_size=len(s), max_size=len(s))) for s in sentences]
    kept_rows = [(s, r) for s, r in zip(sentences, rows) if s and all(word.strip() for word in s)]
    kept = [s for s, _ in kept_rows]
    spec = TaskSpec(name="ner", type="token_classification", format="conll", data_files={"train": "x"})
    split = Dataset.from_dict({"tokens": sentences, "tags": rows})
    mapper = LabelMapper("ner", tags, integers_are_indices=False)
    if not kept:
        event("every example dropped")
        with pytest.raises(DataError, match="split train: all .* examples have empty or missing text"):
            encode_splits(spec, DatasetDict({"train": split}), tiny_tokenizer, mapper, MAX_LENGTH)
        return
    features = encode_splits(spec, DatasetDict({"train": split}), tiny_tokenizer, mapper, MAX_LENGTH)["train"]
    assert len(features) == len(kept)
    for (words, word_tags), labels in zip(kept_rows, features["labels"]):
        encoded = tiny_tokenizer(words, is_split_into_words=True, truncation=True, max_length=MAX_LENGTH)
        word_ids = encoded.word_ids()
        scored = {word for word in word_ids if word is not None}
        if not scored:
            event("a kept sentence with no scored word")
        for word in scored:
            positions = [t for t, w in enumerate(word_ids) if w == word and labels[t] != IGNORE_INDEX]
            tag = tags.index(word_tags[word])
            assert positions[0] == word_ids.index(word) and labels[positions[0]] == tag
            assert all(labels[t] == (2 if tag else 0) for t in positions[1:])  # I-PER inside, O outside
            # One label per piece a raw-text reading splits the word into (fewer when truncated).
            pieces = len({p for p in tiny_tokenizer(words[word], add_special_tokens=False).word_ids()
                          if p is not None})
            whole = word < max(scored) or word_ids[-2] != word
            assert len(positions) == pieces if whole else len(positions) <= pieces
            if len(positions) > 1:
                event("a word trained as several pieces")


def test_a_split_of_only_empty_examples_is_a_data_error(tmp_path, tiny_tokenizer):
    """Found by the property above (sentences=[['']]); the same for a TSV file whose texts are all
    empty: a DataError naming the task and split, not a datasets error about a missing column."""
    from mtl_nlp import DataError, TaskSpec
    from mtl_nlp.data.pipeline import prepare_task_data

    path = tmp_path / "train.tsv"
    path.write_text("text\tlabel\n\tpos\n \tneg\n")
    spec = TaskSpec(name="cls", type="classification", format="tsv",
                    data_files={"train": str(path), "validation": str(path)})
    with pytest.raises(DataError, match="task 'cls', split train: all 2 examples have empty or missing text"):
        prepare_task_data([spec], tiny_tokenizer, max_length=16)


BIO = st.sampled_from(["O", "B-X", "I-X", "B-Y", "I-Y"])


def tags_of(spans: list[tuple[str, int, int]], length: int) -> list[str]:
    tags = ["O"] * length
    for label, start, end in spans:
        tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
    return tags


@settings(max_examples=1000, **FUZZ)
@given(tags=st.lists(BIO, max_size=30))
def test_bio_spans_are_conlleval_spans(tags):
    """1000 tag sequences of length 0-30 over {O, B-X, I-X, B-Y, I-Y}: spans are sorted,
    non-overlapping and within bounds; they cover exactly the non-O tags; a span starts exactly at
    each B- tag and at each I- tag that does not continue an entity of its type (after O, after
    the other type, or first: conlleval's rule, as documented), and continues over I- tags of its
    type; writing the spans back as strict BIO tags and decoding again gives the same spans."""
    spans = bio_spans(tags)
    previous_end = 0
    for label, start, end in spans:
        assert previous_end <= start < end <= len(tags)
        assert label in ("X", "Y")
        assert tags[start] in (f"B-{label}", f"I-{label}")
        assert all(tag == f"I-{label}" for tag in tags[start + 1 : end])
        previous_end = end
    covered = {position for _, start, end in spans for position in range(start, end)}
    assert covered == {position for position, tag in enumerate(tags) if tag != "O"}
    starts = {start for _, start, _ in spans}
    for position, tag in enumerate(tags):
        before = tags[position - 1] if position else "O"
        opens = tag.startswith("B-") or (tag.startswith("I-") and before[2:] != tag[2:])
        assert (position in starts) == opens
    assert bio_spans(tags_of(spans, len(tags))) == spans


@settings(max_examples=300, **FUZZ)
@given(tags=st.lists(
    st.one_of(BIO, st.sampled_from(["I", "B", "B-", "I-", "S-X", "-X", ""]), st.text(max_size=6)),
    max_size=20,
))
def test_bio_spans_of_any_strings_stay_in_bounds(tags):
    """300 sequences mixing BIO tags with arbitrary strings ("", "I", "B-", "S-X", unicode): no
    exception; spans sorted, non-overlapping, within bounds, each starting at a B-TYPE or I-TYPE
    tag of its non-empty TYPE and continuing over I-TYPE tags; a tag that is neither ("O", "I",
    "B-", "S-X") is in no span (found: ["I"] gave the span ("", 0, 1))."""
    previous_end = 0
    spans = bio_spans(tags)
    for label, start, end in spans:
        assert previous_end <= start < end <= len(tags)
        assert label and tags[start] in (f"B-{label}", f"I-{label}")
        assert all(tag == f"I-{label}" for tag in tags[start + 1 : end])
        previous_end = end
    covered = {position for _, start, end in spans for position in range(start, end)}
    assert covered == {i for i, tag in enumerate(tags) if tag[:2] in ("B-", "I-") and len(tag) > 2}
