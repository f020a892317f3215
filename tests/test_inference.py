import io
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.cli import main as cli_main
from mtl_nlp.inference import Predictor, entities
from mtl_nlp.inference.entities import bio_spans

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SENTENCE = "Anna Schmidt visited New Yorkers, in the U.S. today."


def test_bio_spans_conlleval_style():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "B-ORG", "I-ORG", "I-PER"]
    assert bio_spans(tags) == [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("ORG", 5, 7), ("PER", 7, 8)]


def tag_words(tokenizer, text: str, word_tags: dict[int, str], continuation_tag: str = "B-PER"):
    """Offsets, word ids and tag probabilities of `text` where the first subword of word w says
    word_tags[w] (else O) and every later subword says `continuation_tag`, which must be ignored."""
    encoded = tokenizer(text, return_offsets_mapping=True)
    word_ids = encoded.word_ids()
    offsets = [list(pair) for pair in encoded["offset_mapping"]]
    probabilities = torch.full((len(word_ids), len(TAGS)), 0.05)
    seen = set()
    for token, word in enumerate(word_ids):
        tag = "O" if word is None else word_tags.get(word, "O") if word not in seen else continuation_tag
        probabilities[token, TAGS.index(tag)] = 0.8
        seen.add(word)
    return offsets, word_ids, probabilities


def test_entity_offsets_on_a_hand_made_sentence(tiny_tokenizer):
    encoded = tiny_tokenizer(SENTENCE)
    tokens = tiny_tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens[:10] == ["[CLS]", "an", "##na", "schm", "##idt", "visited", "new", "york", "##er", "##s"]
    # Words as the tokenizer splits them: Anna Schmidt visited New Yorkers , in the U . S . today .
    word_tags = {0: "B-PER", 1: "I-PER", 3: "B-LOC", 4: "I-LOC", 8: "B-LOC", 9: "I-LOC", 10: "I-LOC",
                 11: "I-LOC"}
    found = entities(SENTENCE, *tag_words(tiny_tokenizer, SENTENCE, word_tags), TAGS)
    assert found == [
        {"label": "PER", "text": "Anna Schmidt", "start": 0, "end": 12, "score": pytest.approx(0.8)},
        {"label": "LOC", "text": "New Yorkers", "start": 21, "end": 32, "score": pytest.approx(0.8)},
        {"label": "LOC", "text": "U.S.", "start": 41, "end": 45, "score": pytest.approx(0.8)},
    ]


def test_cjk_words_follow_the_tokenizer_not_the_whole_sentence(tiny_tokenizer):
    japanese = "東京に住んでいます"  # I live in Tokyo: 東 京 are words of their own for BERT
    found = entities(japanese, *tag_words(tiny_tokenizer, japanese, {0: "B-LOC", 1: "I-LOC"}), TAGS)
    assert [(e["text"], e["start"], e["end"]) for e in found] == [("東京", 0, 2)]
    chinese = "我住在北京"  # I live in Beijing
    found = entities(chinese, *tag_words(tiny_tokenizer, chinese, {3: "B-LOC", 4: "I-LOC"}), TAGS)
    assert [(e["text"], e["start"], e["end"]) for e in found] == [("北京", 3, 5)]


def test_accented_names_keep_their_characters(tiny_tokenizer):
    text = "José Müller visited Zürich"
    found = entities(text, *tag_words(tiny_tokenizer, text, {0: "B-PER", 1: "I-PER", 3: "B-LOC"}), TAGS)
    assert [(e["label"], e["text"]) for e in found] == [("PER", "José Müller"), ("LOC", "Zürich")]


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
    texts = ["the film is dull .", SENTENCE, "!", "anna"]
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


def test_unusual_inputs_get_valid_answers_and_bad_ones_a_clear_error(checkpoint):
    predictor = Predictor.from_pretrained(checkpoint, mixed_precision="no")
    texts = ["I love 🍕 !", "a\x00b\x07c\x1b", "東京に住んでいます", "Zürich " * 400]
    results = predictor.predict(texts)
    assert len(results) == len(texts)
    for text, result in zip(texts, results):
        assert result["sentiment"]["label"] in ("negative", "positive")
        for entity in result["ner"]:
            assert text[entity["start"] : entity["end"]] == entity["text"]
    with pytest.raises(TypeError, match="input 1 is NoneType"):
        predictor.predict(["fine", None])
    with pytest.raises(TypeError, match="input 0 is int"):
        predictor.predict([3])


def test_bf16_predictor_stores_linear_weights_once_with_the_answers_of_autocast(checkpoint, monkeypatch):
    """Linear layers keep bf16 weights (autocast would re-cast them every batch); layer norms and
    embeddings stay float32; answers and scores equal those of autocast over float32 weights."""
    texts = ["the film is dull .", SENTENCE, "anna schmidt visited new yorkers", "Zürich " * 40]
    predictor = Predictor.from_pretrained(checkpoint, batch_size=2, mixed_precision="bf16")
    dtypes = {type(module).__name__: {p.dtype for p in module.parameters(recurse=False)}
              for module in predictor.model.modules() if list(module.parameters(recurse=False))}
    assert dtypes["Linear"] == {torch.bfloat16}
    assert dtypes["LayerNorm"] == dtypes["Embedding"] == {torch.float32}
    answers = predictor.predict(texts)
    monkeypatch.setattr("mtl_nlp.inference.engines.store_linear_weights", lambda model, dtype: None)
    autocast_only = Predictor.from_pretrained(checkpoint, batch_size=2, mixed_precision="bf16")
    assert {p.dtype for p in autocast_only.model.parameters()} == {torch.float32}
    assert autocast_only.predict(texts) == answers


def test_predictor_runs_the_encoder_once_per_batch(checkpoint):
    predictor = Predictor.from_pretrained(checkpoint, batch_size=4, mixed_precision="no")
    calls = []
    hook = predictor.model.encoder.register_forward_hook(lambda *args: calls.append(1))
    predictor.predict(["a", "b", "c", "d", "e"])
    hook.remove()
    assert len(calls) == 2


def test_predictor_batches_by_token_count_not_characters(checkpoint, tiny_tokenizer):
    """Digits and rare names split into many tokens: character order would pair a short text of
    many tokens with a long text of few, and pad the batch to the many."""
    texts = ["the film is good and the story is fine", "1,234.5678:90", "anna", "the film is dull"]
    counts = [len(tiny_tokenizer(text)["input_ids"]) for text in texts]
    by_tokens = sorted(range(4), key=counts.__getitem__)
    by_chars = sorted(range(4), key=lambda i: len(texts[i]))
    expected = [max(counts[i] for i in by_tokens[:2]), max(counts[i] for i in by_tokens[2:])]
    assert [max(counts[i] for i in by_chars[:2]), max(counts[i] for i in by_chars[2:])] != expected
    predictor = Predictor.from_pretrained(checkpoint, batch_size=2, mixed_precision="no")
    widths = []
    hook = predictor.model.encoder.register_forward_hook(
        lambda module, args, kwargs, output: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    batched = predictor.predict(texts)
    hook.remove()
    assert widths == expected
    assert [answer["sentiment"]["label"] for answer in batched] == [
        predictor.predict(text)["sentiment"]["label"] for text in texts]


def test_long_lists_are_tokenized_in_groups_with_answers_in_order(checkpoint, monkeypatch):
    import mtl_nlp.inference.predictor as inference

    texts = ["the film is dull .", SENTENCE, "anna", "1,234.5678:90", "!", "new york", "the story is fine"]
    predictor = Predictor.from_pretrained(checkpoint, batch_size=2, mixed_precision="no")
    whole = predictor.predict(texts)
    calls = []
    encode = inference.encode_texts
    monkeypatch.setattr(inference, "encode_texts", lambda tokenizer, texts, *rest, **options: (
        calls.append(len(texts)), encode(tokenizer, texts, *rest, **options))[1])
    monkeypatch.setattr(inference, "SORT_GROUP_BATCHES", 1)  # groups of one batch: 2 inputs
    grouped = predictor.predict(texts)
    assert calls == [2, 2, 2, 1]
    assert [a["sentiment"]["label"] for a in grouped] == [a["sentiment"]["label"] for a in whole]
    scores = [a["sentiment"]["score"] for a in whole]
    assert [a["sentiment"]["score"] for a in grouped] == pytest.approx(scores)
    assert [[(e["start"], e["end"]) for e in a["ner"]] for a in grouped] == [
        [(e["start"], e["end"]) for e in a["ner"]] for a in whole]


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


def test_a_text_with_no_words_is_answered_none_by_every_task_without_the_model(checkpoint, monkeypatch):
    """No confident label for no text: an empty or whitespace-only text (or a pair holding one)
    gets None from every task that reads it, and the other inputs their answers, in order."""
    predictor = Predictor.from_pretrained(checkpoint, mixed_precision="no")
    texts = ["", "the film is dull .", " \t\n\u3000", "anna"]
    expected = predictor.predict([texts[1], texts[3]])
    calls = []
    run = predictor._answer_kind
    monkeypatch.setattr(predictor, "_answer_kind", lambda kind, *rest: calls.append(kind) or run(kind, *rest))
    answers = predictor.predict(texts)
    assert answers == [{"ner": None, "sentiment": None}, expected[0], {"ner": None, "sentiment": None},
                       expected[1]]
    assert calls == [[texts[1], texts[3]]]  # the model never saw the blank texts
    assert predictor.predict("  ", tasks="sentiment") == {"sentiment": None}


def test_cli_predict_answers_a_blank_line_with_null_for_every_task(checkpoint, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("the film is dull .\n\n   \nAnna visited New York .\n")
    assert cli_main(["predict", str(checkpoint), str(source)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4  # output line i answers input line i
    assert lines[1] == lines[2] == {"ner": None, "sentiment": None}
    assert lines[0]["sentiment"]["label"] in ("negative", "positive") and isinstance(lines[3]["ner"], list)


def test_blank_lines_are_kept_as_inputs_the_predictor_answers_none():
    from mtl_nlp.inference import input_from_line

    assert input_from_line("\n", pairs=False) == "" and input_from_line("  \r\n", pairs=False) == "  "
    assert input_from_line("\n") == ("", "") and input_from_line("\t\n") == ("", "")  # empty pairs
    assert input_from_line("a\tb\n") == ("a", "b") and input_from_line("a\n") == "a"


def test_a_task_named_twice_is_answered_once(checkpoint, monkeypatch):
    predictor = Predictor.from_pretrained(checkpoint, mixed_precision="no")
    seen = []
    engine = predictor._engine
    monkeypatch.setattr(predictor, "_engine",
                        lambda inputs, tasks: seen.append(list(tasks)) or engine(inputs, tasks))
    assert predictor.predict("anna", tasks=["sentiment", "ner", "sentiment"]) == predictor.predict("anna")
    assert seen[0] == ["sentiment", "ner"]


def test_count_windows_is_the_number_of_windows_a_tagging_task_reads(checkpoint, tiny_tokenizer, monkeypatch):
    predictor = Predictor.from_pretrained(checkpoint, mixed_precision="no")
    texts = ["anna", "anna visited new york . " * 6, "anna visited new york . " * 7, "anna " * 29,
             "anna " * 30, "anna " * 31, "anna visited new york . " * 40, "東京" * 200]
    windows = [len(tiny_tokenizer(text, truncation=True, max_length=32, stride=predictor.stride,
                                  return_overflowing_tokens=True)["input_ids"]) for text in texts]
    assert windows[0] == 1 and windows[-1] > 10
    assert predictor.count_windows(texts) == windows
    assert predictor.count_windows(texts, tasks=["sentiment"]) == [1] * len(texts)  # no task reads windows
    # with a limit, counting stops once the total is over it: lower bounds, over the limit
    limited = predictor.count_windows(texts, limit=5)
    assert sum(limited) > 5 and all(mine <= exact for mine, exact in zip(limited, windows))
    long_text = "anna visited new york . " * 4000  # 20,000 tokens: counted from its beginning
    calls = []
    tokenize = type(predictor.tokenizer).__call__
    monkeypatch.setattr(type(predictor.tokenizer), "__call__", lambda self, text, **options: (
        calls.append(len(text)), tokenize(self, text, **options))[1])
    assert 5 < predictor.count_windows([long_text], limit=5)[0] < 50
    assert calls and max(calls) < len(long_text) // 10


def test_a_predictor_shared_between_threads_answers_every_call(tiny_model_dir, tiny_tokenizer, tmp_path):
    """A head on a lower layer stops the encoder there with hooks registered for the call, and the
    tokenizer keeps its truncation settings in shared state: calls from several threads take turns."""
    torch.manual_seed(0)
    heads = [HeadConfig(name="ner", type="token_classification", labels=TAGS, layer=1),
             HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"])]
    MultiTaskModel.from_encoder(str(tiny_model_dir), heads).save_pretrained(
        tmp_path / "low", tokenizer=tiny_tokenizer, extra={"max_length": 32})
    predictor = Predictor.from_pretrained(tmp_path / "low", mixed_precision="no")
    calls = [(["anna visited new york . " * 9, "the film"], None), ("the film is dull .", "ner"),
             (["peter went to paris"], ["sentiment"])] * 20
    expected = [predictor.predict(inputs, tasks) for inputs, tasks in calls]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda call: predictor.predict(*call), calls))
    assert answers == expected


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli_main(["predict", str(tmp_path / "missing")]) == 2
    assert f"no checkpoint at {tmp_path / 'missing'}: there is no such folder" in capsys.readouterr().err


def test_cli_lists_tasks(capsys):
    assert cli_main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "conll2003" in out and "token_classification" in out and "ag_news" in out


@pytest.mark.parametrize("head, question", [
    (HeadConfig(name="qa", type="extractive_qa"), {"question": "where ?", "context": "anna is in paris ."}),
    (HeadConfig(name="mc", type="multiple_choice"), {"question": "what barks ?", "choices": ["cat", "dog"]}),
])
def test_question_inputs_run_the_encoder_without_autograd(tiny_model_dir, tiny_tokenizer, head, question):
    from transformers import BertModel

    model = MultiTaskModel(BertModel.from_pretrained(tiny_model_dir), [head])
    predictor = Predictor(model, tiny_tokenizer, max_length=32, stride=4, mixed_precision="no")
    engine, grad_enabled = predictor._engine, []

    def recording(inputs, tasks):
        grad_enabled.append(torch.is_grad_enabled())
        return engine(inputs, tasks)

    predictor._engine = recording
    predictor.predict(question)
    assert grad_enabled == [False]  # a graph kept per batch would hold every window's activations
