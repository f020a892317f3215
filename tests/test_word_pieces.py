"""Training labels for the pieces raw-text reading splits a dataset word into."""

from tokenizers import ByteLevelBPETokenizer
from transformers import RobertaTokenizerFast

from mtl_nlp import TaskSpec
from mtl_nlp.data.features import IGNORE_INDEX
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.data.word_pieces import align_piece_labels, continuation_ids, piece_starts

X = IGNORE_INDEX


def test_continuation_of_each_tag():
    labels = ["O", "B-PER", "I-PER", "B-MISC", "PER", "I-LOC"]
    # B-PER and I-PER continue as I-PER; B-MISC has no I-MISC to continue as; tags outside
    # entities (O, an unprefixed PER) continue as themselves.
    assert continuation_ids(labels) == [0, 2, 2, X, 4, 5]


def test_piece_starts_of_bert_words(tiny_tokenizer):
    starts = piece_starts(tiny_tokenizer, ["anna", "u.s.", "new-york", "yorkers", "u.s."])
    # "anna" and "yorkers" are one piece each (subwords do not start pieces); punctuation does.
    assert starts == {"anna": frozenset(), "u.s.": frozenset({1, 2, 3}),
                      "new-york": frozenset({3, 4}), "yorkers": frozenset()}


def test_piece_starts_of_byte_level_bpe_words():
    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator(["Anna visited the U.S. and Bre-X in New York"] * 10, vocab_size=300,
                            min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                            show_progress=False)
    tokenizer = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                     sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                     pad_token="<pad>", add_prefix_space=True)
    assert piece_starts(tokenizer, ["Anna", "U.S.", "Bre-X"]) == {
        "Anna": frozenset(), "U.S.": frozenset({1, 2, 3}), "Bre-X": frozenset({3, 4})}


def test_align_piece_labels_by_hand():
    #          [CLS]  an   ##na  u     .     s     .     1     -     0    [SEP]
    word_ids = [None, 0, 0, 1, 1, 1, 1, 2, 2, 2, None]
    offsets = [(0, 0), (0, 2), (2, 4), (0, 1), (1, 2), (2, 3), (3, 4), (0, 1), (1, 2), (2, 3), (0, 0)]
    words = ["anna", "u.s.", "1-0"]
    starts = {"anna": frozenset(), "u.s.": frozenset({1, 2, 3}), "1-0": frozenset({1, 2})}
    OUT, B_PER, I_PER, B_LOC, I_LOC = range(5)
    continued = continuation_ids(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    assert align_piece_labels(word_ids, offsets, words, [B_PER, B_LOC, OUT], starts, continued) == [
        X, B_PER, X, B_LOC, I_LOC, I_LOC, I_LOC, OUT, OUT, OUT, X]


def test_train_split_labels_pieces_and_evaluation_labels_words(tmp_path, tiny_tokenizer):
    conll = "Anna B-PER\nvisited O\nU.S. B-LOC\nNew-York I-LOC\nYorkers O\n"
    path = tmp_path / "train.txt"
    path.write_text(conll)
    spec = TaskSpec(name="ner", type="token_classification", format="conll",
                    data_files={"train": str(path), "validation": str(path)})
    data = prepare_task_data([spec], tiny_tokenizer, max_length=32)["ner"]
    assert data.labels == ["B-LOC", "B-PER", "I-LOC", "O"]
    B_LOC, B_PER, I_LOC, OUT = range(4)
    train, validation = data.splits["train"][0], data.splits["validation"][0]
    tokens = tiny_tokenizer.convert_ids_to_tokens(train["input_ids"])
    assert tokens == ["[CLS]", "an", "##na", "visited", "u", ".", "s", ".", "new", "-", "york",
                      "york", "##er", "##s", "[SEP]"]
    # Training: every piece of U.S. and New-York is inside the LOC entity; subwords stay unlabelled.
    assert train["labels"] == [X, B_PER, X, OUT, B_LOC, I_LOC, I_LOC, I_LOC, I_LOC, I_LOC, I_LOC,
                               OUT, X, X, X]
    # Evaluation scores the dataset's words, one label each on its first token.
    assert validation["input_ids"] == train["input_ids"]
    assert validation["labels"] == [X, B_PER, X, OUT, B_LOC, X, X, X, I_LOC, X, X, OUT, X, X, X]
