"""Property-based tests of the CoNLL reader: generated documents (random unicode words, control
characters, non-breaking spaces, very long words, random column counts, BOMs, \\n and \\r\\n line
endings, -DOCSTART- lines, runs of blank lines, lines without a tag, bytes that are not UTF-8) are
read back exactly, or refused with an error naming the file and the 1-based line at fault."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mtl_nlp import TaskSpec
from mtl_nlp.common.errors import DataError, MtlNlpError
from mtl_nlp.data.conll import ConllFormatError, iter_conll_sentences
from mtl_nlp.data.loading import load_task_splits

# Deterministic for CI, no example database written into the checkout, no per-example deadline
# (a shared 2-core machine makes timings noisy).
FUZZ = dict(derandomize=True, database=None, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Characters a word may hold besides the random ones, drawn often on purpose: non-breaking and
# other unicode spaces, zero-width characters, control characters, line/paragraph separators
# (not line breaks for the reader), CJK, accents, an emoji, the replacement character.
SPECIAL = "\xa0\u202f\u3000\u2009\u200b\u200d\u2028\u2029\x85\x0b\x0c\x1c\x1f\x00\x07\x1b\x7fé東🍕\ufffd"
# A column holds anything but the column separators (space, tab) and line breaks; a U+FEFF is
# left out because one at the very start of a file is its byte order mark.
CHARS = st.one_of(
    st.characters(exclude_categories=("Cs",), exclude_characters=" \t\n\r\ufeff"),
    st.sampled_from(SPECIAL),
)
SHORT = st.text(CHARS, min_size=1, max_size=8).filter(lambda word: word != "-DOCSTART-")
LONG = st.builds(lambda word, size: (word * size)[:size], SHORT, st.integers(1000, 5000))
WORDS = st.one_of(SHORT, SHORT, SHORT, LONG)
TAGS = st.one_of(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-", "S-X"]), SHORT).filter(
    str.strip  # a row whose every column is whitespace (e.g. "\xa0 \u3000") is a blank line
)
SPACE = st.text(st.sampled_from(" \t"), min_size=1, max_size=3)
MARGIN = st.text(st.sampled_from(" \t"), max_size=2)
BLANK = st.text(st.sampled_from(" \t\xa0\u3000\x0b\x0c\u2028\x85"), max_size=3)
NOT_UTF8 = [b"\xff", b"\x80", b"\xc3(", b"\xed\xa0\x80", b"\xe6\x9d"]


@dataclass
class Document:
    """A generated CoNLL file and what reading it must give."""

    lines: list[bytes]
    newlines: list[str]
    bom: bool
    final_newline: bool
    sentences: list[tuple[int, list[str], list[str]]] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # the line closing each sentence (blank, -DOCSTART-, EOF)
    error_line: int | None = None  # the first line the reader must refuse

    def content(self) -> bytes:
        ends = [newline.encode() for newline in self.newlines]
        if not self.final_newline and ends:
            ends[-1] = b""
        body = b"".join(line + end for line, end in zip(self.lines, ends))
        return (b"\xef\xbb\xbf" if self.bom else b"") + body


@st.composite
def documents(draw) -> Document:
    lines: list[bytes] = []
    sentences: list[tuple[int, list[str], list[str]]] = []
    ends: list[int] = []
    error_line = None
    current: tuple[int, list[str], list[str]] | None = None

    def close() -> None:  # before appending the line that closes the sentence
        nonlocal current
        if current is not None:
            sentences.append(current)
            ends.append(len(lines) + 1)
        current = None

    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["sentence"] * 5 + ["blank", "docstart", "bad", "not_utf8"]))
        event(f"item: {kind}")
        if kind == "blank":
            close()
            lines += [draw(BLANK).encode() for _ in range(draw(st.integers(1, 3)))]
        elif kind == "docstart":
            close()
            lines.append(draw(st.sampled_from(["-DOCSTART- -X- -X- O", "-DOCSTART-", " -DOCSTART-\tO"]))
                         .encode())
        elif kind == "bad":  # one column: a word without its tag
            lines.append((draw(MARGIN) + draw(SHORT.filter(str.strip)) + draw(MARGIN)).encode())
            error_line = error_line or len(lines)
        else:
            for _ in range(draw(st.integers(1, 4))):
                word, tag = draw(WORDS), draw(TAGS)
                middle = draw(st.lists(SHORT, max_size=3))  # POS, chunk: any number of them
                separators = draw(st.lists(SPACE, min_size=len(middle) + 1, max_size=len(middle) + 1))
                columns = [word, *middle, tag]
                text = columns[0] + "".join(s + c for s, c in zip(separators, columns[1:]))
                margin = draw(MARGIN)
                raw = (margin + text + draw(MARGIN)).encode()
                if kind == "not_utf8" and draw(st.booleans()):
                    # Inside the word, between two of its characters (a byte spliced into a
                    # character could complete it); the line must be refused.
                    cut = len((margin + word[: draw(st.integers(0, len(word)))]).encode())
                    raw = raw[:cut] + draw(st.sampled_from(NOT_UTF8)) + raw[cut:]
                    error_line = error_line or len(lines) + 1
                lines.append(raw)
                if current is None:
                    current = (len(lines), [], [])
                current[1].append(word)
                current[2].append(tag)
            if draw(st.booleans()):  # a blank line after the sentence, or straight into the next item
                close()
                lines.append(draw(BLANK).encode())
    close()
    newlines = draw(st.one_of(
        st.sampled_from(["\n", "\r\n"]).map(lambda newline: [newline] * len(lines)),  # one style
        st.lists(st.sampled_from(["\n", "\r\n"]), min_size=len(lines), max_size=len(lines)),  # mixed
    ))
    return Document(lines, newlines, draw(st.booleans()), draw(st.booleans()), sentences, ends, error_line)


_names = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-conll").resolve()


def written(folder: Path, document: Document) -> Path:
    path = folder / f"doc{next(_names)}.txt"
    path.write_bytes(document.content())
    return path


def expected_sentences(document: Document) -> list[tuple[int, list[str], list[str]]]:
    """The sentences written; with an error, those closed before the line at fault."""
    if document.error_line is None:
        return document.sentences
    return [s for s, end in zip(document.sentences, document.ends) if end < document.error_line]


@settings(max_examples=400, **FUZZ)
@given(document=documents())
def test_reader_gives_back_what_was_written_or_names_the_file_and_line(folder, document):
    """400 generated documents: the sentences written, with their first line numbers, come back
    exactly (BOM and \\r removed); a line without a tag or with bytes that are not UTF-8 raises
    ConllFormatError (an MtlNlpError) naming `file:line` of the first such line, after the
    sentences before it. Nothing else is raised."""
    path = written(folder, document)
    read: list[tuple[int, list[str], list[str]]] = []
    if document.error_line is None:
        read.extend(iter_conll_sentences(path))
    else:
        with pytest.raises(ConllFormatError) as caught:
            read.extend(iter_conll_sentences(path))
        assert isinstance(caught.value, MtlNlpError)
        assert str(caught.value).startswith(f"{path}:{document.error_line}: ")
    assert read == expected_sentences(document)


@settings(max_examples=60, **FUZZ)
@given(document=documents())
def test_loader_reads_the_same_sentences_or_raises_a_data_error(folder, document):
    """60 generated documents through load_task_splits (datasets, its cache): the train split holds
    the sentences written (tokens, tags, first line), or a DataError (an MtlNlpError) names the
    task, the file and the line; a file without a sentence is a DataError naming the file."""
    path = written(folder, document)
    spec = TaskSpec(name="ner", type="token_classification", format="conll",
                    data_files={"train": str(path), "validation": str(path)})
    expected = expected_sentences(document)
    if document.error_line is None and expected:
        splits = load_task_splits(spec, cache_dir=str(folder / "cache"))
        rows = splits["train"].to_list()
        assert [(r["line"], r["tokens"], r["tags"]) for r in rows] == expected
        return
    with pytest.raises(DataError) as caught:
        load_task_splits(spec, cache_dir=str(folder / "cache"))
    assert isinstance(caught.value, MtlNlpError)
    if document.error_line is None:
        assert str(caught.value) == (f"task 'ner': {path}: no sentences; the file is empty or holds "
                                     "only blank and -DOCSTART- lines")
    else:
        assert str(caught.value).startswith(f"task 'ner': {path}:{document.error_line}: ")


@pytest.mark.parametrize(("content", "expected"), [
    ("\ufeffEU B-ORG\r\nrejects O\r\n", [(1, ["EU", "rejects"], ["B-ORG", "O"])]),
    ("10\u202f000 O\nNew\xa0York B-LOC\n", [(1, ["10\u202f000", "New\xa0York"], ["O", "B-LOC"])]),
    ("a O\n-DOCSTART- -X- O\nb O\n", [(1, ["a"], ["O"]), (3, ["b"], ["O"])]),
    ("a\x0bb O\n\xa0\u3000\n\u200b O\n", [(1, ["a\x0bb"], ["O"]), (3, ["\u200b"], ["O"])]),
])
def test_examples_the_properties_found(tmp_path, content, expected):
    """Regressions: before, a BOM stayed on the first word, a word holding a non-breaking or
    vertical-tab character lost its end (split like a column), and a -DOCSTART- line inside a
    sentence glued the sentences of two documents together."""
    path = tmp_path / "a.txt"
    path.write_bytes(content.encode())
    assert list(iter_conll_sentences(path)) == expected


def test_bytes_that_are_not_utf8_name_the_line(tmp_path):
    """Regression: a UnicodeDecodeError from inside the reader (or a DatasetGenerationError through
    the loader) without a line number."""
    path = tmp_path / "a.txt"
    path.write_bytes(b"EU B-ORG\n\nM\xfcller B-PER\n")
    with pytest.raises(ConllFormatError, match=rf"{path}:3: byte 0xfc at column 2 is not UTF-8"):
        list(iter_conll_sentences(path))
