"""Training labels for the pieces a dataset word splits into when a raw text is read.

A tagging dataset gives words (`S.AFRICA`, `U.S.`, `Bre-X`); the Predictor and transformers'
pipelines read raw text and split it into words with the tokenizer's own normalizer and
pre-tokenizer, which cut those at punctuation (`s` `.` `africa`). Trained on each dataset word's
first token only, the model never learns a tag for `.` or `africa`, so a served model breaks
such entities apart. Training therefore also labels the first token of every later piece of a
word: `I-X` inside an entity (`B-X` and `I-X` words alike), the word's own tag outside one.
Evaluation keeps one label per dataset word, so its scores stay comparable with seqeval's.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from mtl_nlp.common.tokenizing import IGNORE_INDEX


def piece_starts(tokenizer: PreTrainedTokenizerBase, words: list[str]) -> dict[str, frozenset[int]]:
    """{word: character offsets inside it where a raw-text reading starts a new word} (offset 0
    excluded), for the distinct `words`; empty for a word read as one piece."""
    distinct = list(dict.fromkeys(words))
    if not distinct:
        return {}
    encoded = tokenizer(distinct, add_special_tokens=False, return_offsets_mapping=True)
    starts = {}
    for row, word in enumerate(distinct):
        firsts, previous = set(), None
        for piece, (start, end) in zip(encoded.word_ids(row), encoded["offset_mapping"][row]):
            if piece is not None and piece != previous and end > start:
                firsts.add(start)
            previous = piece
        starts[word] = frozenset(firsts - {0})
    return starts


def continuation_ids(labels: list[str]) -> list[int]:
    """For each tag id, the id the later pieces of a word with that tag are trained on: `I-X` for
    `B-X` and `I-X` (IGNORE_INDEX when the label set has no `I-X`), the tag itself otherwise."""
    ids = {label: index for index, label in enumerate(labels)}
    continued = []
    for index, label in enumerate(labels):
        prefix, dash, kind = label.partition("-")
        if dash and kind and prefix in ("B", "I"):
            continued.append(ids.get(f"I-{kind}", IGNORE_INDEX))
        else:
            continued.append(index)
    return continued


def align_piece_labels(
    word_ids: list[int | None], offsets: list[tuple[int, int]], words: list[str],
    word_labels: list[int], starts: dict[str, frozenset[int]], continued: list[int],
) -> list[int]:
    """Labels of one tokenized row of dataset words (offsets relative to each word, as a fast
    tokenizer gives them for `is_split_into_words` input): a word's first token gets its tag, the
    first token of each later piece gets `continued[tag]`, every other position IGNORE_INDEX."""
    aligned, previous, labelled = [], None, set()
    for word, (start, end) in zip(word_ids, offsets):
        if word is None:
            aligned.append(IGNORE_INDEX)
        elif word != previous:
            aligned.append(word_labels[word])
            labelled = {start}
        elif start in starts[words[word]] and start not in labelled and end > start:
            aligned.append(continued[word_labels[word]])
            labelled.add(start)
        else:
            aligned.append(IGNORE_INDEX)
        previous = word
    return aligned
