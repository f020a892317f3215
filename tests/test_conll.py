import pytest

from mtl_nlp.data.conll import ConllFormatError, iter_conll_sentences

SAMPLE = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
\t
Peter B-PER
Blackburn\tI-PER
{blank}
-DOCSTART- -X- -X- O
Last O""".format(blank="   ")


def test_reads_words_and_last_column_tags(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(SAMPLE)
    assert list(iter_conll_sentences(path)) == [
        (3, ["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
        (7, ["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        (11, ["Last"], ["O"]),
    ]


def test_line_without_tag_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("EU B-ORG\nrejects\n")
    with pytest.raises(ConllFormatError, match=rf"{path}:2: line 'rejects' has no tag column"):
        list(iter_conll_sentences(path))
