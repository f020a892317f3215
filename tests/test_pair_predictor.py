"""Predictor answers for regression, multilabel and sentence-pair tasks, and the input rule:
a str is answered by the single-text tasks, a (text, text_pair) tuple by the pair tasks."""

import pytest
import torch

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.inference import Predictor, input_from_line

ASPECTS = ["acting", "cast", "script"]
NLI = ["entailment", "neutral", "contradiction"]
HEADS = [
    HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"]),
    HeadConfig(name="aspects", type="multilabel", labels=ASPECTS, threshold=0.7),
    HeadConfig(name="sim", type="regression", text_pair=True),
    HeadConfig(name="nli", type="classification", labels=NLI, text_pair=True, pooling="cls"),
]
PAIR = ("the film is dull", "the story is dull")


@pytest.fixture
def model(tiny_model_dir):
    torch.manual_seed(0)
    return MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS).eval()


@pytest.fixture
def predictor(model, pair_tokenizer):
    return Predictor(model, pair_tokenizer, max_length=32, batch_size=4, mixed_precision="no")


def fix_output(head, bias):
    """Make a sentence head ignore its input: zero weights, the given bias."""
    with torch.no_grad():
        head.classifier.weight.zero_()
        head.classifier.bias.copy_(torch.tensor(bias))


def test_answers_of_each_type(predictor):
    fix_output(predictor.model.heads["aspects"], torch.logit(torch.tensor([0.9, 0.2, 0.75])).tolist())
    fix_output(predictor.model.heads["sim"], [3.25])
    text = predictor.predict("the acting is wonderful")
    assert set(text) == {"sentiment", "aspects"}
    assert text["aspects"]["labels"] == ["acting", "script"]  # at/over 0.7, in label order
    assert text["aspects"]["scores"] == pytest.approx({"acting": 0.9, "cast": 0.2, "script": 0.75})
    assert list(text["aspects"]["scores"]) == ASPECTS
    assert text["sentiment"]["label"] in ("negative", "positive") and 0.5 <= text["sentiment"]["score"] <= 1
    pair = predictor.predict(PAIR)
    assert set(pair) == {"sim", "nli"}
    assert pair["sim"] == {"value": pytest.approx(3.25, abs=1e-6)} and isinstance(pair["sim"]["value"], float)
    assert pair["nli"]["label"] in NLI and 1 / 3 <= pair["nli"]["score"] <= 1


def test_mixed_inputs_keep_their_order_and_kinds_run_separate_encoder_passes(predictor):
    calls = []
    hook = predictor.model.encoder.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs.get("token_type_ids")), with_kwargs=True
    )
    inputs = ["the film", PAIR, "the cast is dull", ["the film", "the story"], "the story"]
    results = predictor.predict(inputs)
    hook.remove()
    assert [set(r) for r in results] == [{"sentiment", "aspects"}, {"sim", "nli"}] * 2 + [
        {"sentiment", "aspects"}]
    # 3 texts -> one pass; 2 pairs -> one pass (batch size 4). Only the pair pass has segment 1.
    assert len(calls) == 2
    assert sorted(int(types.max()) for types in calls) == [0, 1]
    for item, result in zip(inputs, results):
        alone = predictor.predict(tuple(item) if isinstance(item, list) else item)
        for task, answer in alone.items():
            for key, value in answer.items():
                if isinstance(value, (float, dict)):  # scores, values, per-label probabilities
                    assert result[task][key] == pytest.approx(value, abs=1e-5)
                else:
                    assert result[task][key] == value


def test_explicit_tasks_must_take_the_input_kind(predictor):
    assert set(predictor.predict(PAIR, tasks=["sim"])) == {"sim"}
    assert set(predictor.predict("the film", tasks=["aspects"])) == {"aspects"}
    with pytest.raises(ValueError, match=r"task 'sim' takes \(text, text_pair\) pairs; input 0 is a single "):
        predictor.predict("the film", tasks=["sentiment", "sim"])
    with pytest.raises(ValueError, match=r"task 'sentiment' takes single texts; input 1 is a \(text, "):
        predictor.predict(["the film", PAIR], tasks=["sentiment"])
    with pytest.raises(KeyError, match=r"unknown task\(s\) \['sts'\]"):
        predictor.predict(PAIR, tasks=["sts"])


def test_malformed_inputs_are_named(predictor):
    with pytest.raises(TypeError, match=r"input 0 is a tuple of 3 item\(s\); a tuple input is one "
                                        r"\(text, text_pair\) pair"):
        predictor.predict(("a", "b", "c"))
    with pytest.raises(TypeError, match=r"input 1 is int, expected a str, a \(text, text_pair\) tuple or a"):
        predictor.predict(["a", 3])
    assert predictor.predict([]) == []


def test_a_model_without_pair_tasks_refuses_pairs(tiny_model_dir, pair_tokenizer):
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS[:2])
    predictor = Predictor(model, pair_tokenizer, mixed_precision="no")
    with pytest.raises(ValueError, match=r"input 0 is a \(text, text_pair\) pair, but this model has "
                                         r"no sentence-pair task \(tasks: sentiment \(texts\), "
                                         r"aspects \(texts\)\)"):
        predictor.predict(PAIR)


def test_predictions_survive_save_and_reload(predictor, pair_tokenizer, tmp_path):
    inputs = ["the acting is wonderful", PAIR, ("the cast", "the film is dull"), "the story"]
    before = predictor.predict(inputs)
    predictor.model.save_pretrained(tmp_path, tokenizer=pair_tokenizer, extra={"max_length": 32})
    reloaded = Predictor.from_pretrained(tmp_path, batch_size=4, mixed_precision="no")
    assert reloaded.pair_tasks == ["sim", "nli"]
    assert reloaded.model.head_configs["aspects"].threshold == 0.7
    assert reloaded.predict(inputs) == before


def test_input_lines_with_a_tab_are_pairs():
    assert input_from_line("a man eats\ta person eats\n") == ("a man eats", "a person eats")
    assert input_from_line("one\ttwo\tthree") == ("one", "two\tthree")  # split at the first TAB
    assert input_from_line("just a text\n") == "just a text"
    assert input_from_line("one\ttwo\n", pairs=False) == "one\ttwo"  # no requested task reads pairs


def test_cli_predict_reads_tab_separated_pairs(predictor, pair_tokenizer, tmp_path, capsys):
    import json

    from mtl_nlp.cli import main as cli_main

    predictor.model.save_pretrained(tmp_path / "ckpt", tokenizer=pair_tokenizer, extra={"max_length": 32})
    source = tmp_path / "in.txt"
    source.write_text("the film is dull\tthe story is dull\nthe acting is wonderful\n")
    assert cli_main(["predict", str(tmp_path / "ckpt"), str(source)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [set(line) for line in lines] == [{"sim", "nli"}, {"sentiment", "aspects"}]
    expected = predictor.predict(PAIR)  # the CLI may run in bf16: scores agree to about 1e-2
    assert lines[0]["nli"]["label"] == expected["nli"]["label"]
    assert lines[0]["sim"]["value"] == pytest.approx(expected["sim"]["value"], abs=0.02)
