"""Multiple-choice tasks: the head against transformers' *ForMultipleChoice, reading options (the
Hub's commonsense_qa schema and plain lists of varying length), bad rows, training in a mix,
reloading, the Predictor and `mtl-nlp predict`, and the export of every family."""

from __future__ import annotations

import json

import pytest
import torch
from encoder_families import FAMILIES, tiny_encoder
from transformers import AutoModelForMultipleChoice, BertConfig, BertForMultipleChoice, BertModel

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.cli import main as cli_main
from mtl_nlp.common.errors import DataError
from mtl_nlp.data.choices import ChoicesCollator, answer_index, option_texts
from mtl_nlp.inference import Predictor, PredictorInputError
from mtl_nlp.modeling.heads import build_head
from mtl_nlp.modeling.options import option_scores
from mtl_nlp.publish.export import export_task

QUESTIONS = [("where do you keep milk ?", ["fridge", "oven", "garden"], 0),
             ("what is hot ?", ["ice", "snow", "sun", "rain"], 2),
             ("what barks ?", ["cat", "dog"], 1)]


def test_the_head_computes_what_bert_for_multiple_choice_computes(tiny_tokenizer):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    reference = BertForMultipleChoice(config).eval()
    head = build_head(32, HeadConfig(name="mc", type="multiple_choice", pooling="pooler")).eval()
    head.pooler.load_state_dict(reference.bert.pooler.dense.state_dict())
    head.classifier.load_state_dict(reference.classifier.state_dict())
    questions = ["where do you keep milk ?", "what is hot ?"]
    options = [["fridge", "oven", "shelf"], ["ice", "sun", "snow"]]
    rows = tiny_tokenizer([q for q, choices in zip(questions, options) for _ in choices],
                          [option for choices in options for option in choices], padding=True,
                          return_tensors="pt")
    inputs = {key: value.view(2, 3, -1) for key, value in rows.items()}
    with torch.no_grad():
        expected = reference(**inputs).logits
        hidden = reference.bert(**rows).last_hidden_state
        ours = option_scores(head(hidden, rows["attention_mask"]), torch.ones(2, 3))
    torch.testing.assert_close(ours, expected)
    assert head.decode(ours).tolist() == expected.argmax(dim=-1).tolist()


def test_an_absent_option_is_never_chosen_and_has_no_probability():
    head = build_head(4, HeadConfig(name="mc", type="multiple_choice", pooling="mean"))
    logits = option_scores(torch.tensor([0.5, 0.1, 9.0, 0.2, 0.3, 0.4]), torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert head.decode(logits).tolist() == [0, 2]  # 9.0 belongs to the first example's absent third option
    probabilities = head.scores(logits)
    assert probabilities[0, 2].item() == 0.0
    torch.testing.assert_close(probabilities.sum(dim=-1), torch.ones(2))
    loss = head.loss(logits, torch.tensor([1, 2]))
    expected = -(torch.log_softmax(torch.tensor([0.5, 0.1]), 0)[1] + torch.log_softmax(
        torch.tensor([0.2, 0.3, 0.4]), 0)[2]) / 2
    torch.testing.assert_close(loss, expected)


def test_options_and_answers_in_every_schema():
    hub = {"label": ["A", "B"], "text": ["cat", "dog"]}
    assert option_texts(hub, "mc", "row 0") == (["cat", "dog"], ["A", "B"])
    assert option_texts(["cat", "dog"], "mc", "row 0") == (["cat", "dog"], None)
    for answer in (1, "B", "dog", "1"):
        assert answer_index(answer, ["cat", "dog"], ["A", "B"], "mc", "row 0") == 1


@pytest.mark.parametrize(("options", "answer", "message"), [
    ([], 0, "split train, row 7: the question has no options"),
    (["cat", ""], 0, "row 7: every option must be a non-empty text"),
    (["cat", "dog"], "E",
     r"row 7: answer 'E' is not one of the 2 options \(0-1, or an option's text: cat, dog\)"),
    (["cat", "dog"], 2, "answer 2 is not one of the 2 options"),
])
def test_a_bad_row_is_an_error_naming_it(options, answer, message):
    with pytest.raises(DataError, match=message):
        texts, labels = option_texts(options, "mc", "split train, row 7")
        answer_index(answer, texts, labels, "mc", "split train, row 7")


def test_a_batch_pads_its_questions_to_the_most_options(tiny_tokenizer):
    features = [{"input_ids": [[2, 5, 3], [2, 6, 3]], "attention_mask": [[1, 1, 1]] * 2, "labels": 1},
                {"input_ids": [[2, 7, 8, 3], [2, 5, 3], [2, 9, 3]],
                 "attention_mask": [[1, 1, 1, 1], [1, 1, 1], [1, 1, 1]], "labels": 2}]
    batch = ChoicesCollator(tiny_tokenizer)(features)
    assert batch["input_ids"].shape == (2, 3, 4)
    assert batch["choice_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["labels"].tolist() == [1, 2]
    assert batch["attention_mask"][0, 0].tolist() == [1, 1, 1, 0]


def write_questions(folder, schema: str) -> dict[str, str]:
    """train/validation/test JSON lines of QUESTIONS: the Hub's schema (answerKey letters) or plain
    option lists with the answer's index."""
    files = {}
    for split, repeat in (("train", 12), ("validation", 2), ("test", 2)):
        path = folder / f"{schema}-{split}.jsonl"
        rows = []
        for question, options, answer in QUESTIONS * repeat:
            if schema == "hub":
                letters = [chr(ord("A") + index) for index in range(len(options))]
                rows.append({"question": question, "choices": {"label": letters, "text": options},
                             "answerKey": letters[answer]})
            else:
                rows.append({"question": question, "options": options, "answer": answer})
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        files[split] = str(path)
    return files


@pytest.fixture(scope="module")
def choice_run(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("choices")
    hub, plain = write_questions(folder, "hub"), write_questions(folder, "plain")
    tasks = (f"tasks=[{{name: csqa, type: multiple_choice, format: json, data_files: {json.dumps(hub)}}}, "
             f"{{name: quiz, type: multiple_choice, format: json, choices_column: options, "
             f"label_column: answer, data_files: {json.dumps(plain)}}}, demo_topic]")
    out = folder / "run"
    assert cli_main(["train", f"model={tiny_model_dir}", f"cache_dir={folder / 'cache'}",
                     "mixed_precision=no", "train.batch_size=4", "train.lr=5e-3", "train.max_steps=30",
                     "max_eval_examples=8", "max_train_examples=40", f"output_dir={out}", tasks]) == 0
    return out


def test_a_mix_with_multiple_choice_trains_scores_and_reloads(choice_run):
    metrics = json.loads((choice_run / "metrics.json").read_text())
    assert set(metrics["csqa"]) == {"accuracy"} and metrics["main_metrics"]["quiz"] == "accuracy"
    assert metrics["csqa"]["accuracy"] == 1.0  # three questions, seen in training
    model = MultiTaskModel.from_pretrained(choice_run)
    assert model.head_configs["csqa"].type == "multiple_choice" and model.head_configs["csqa"].labels == []


def test_the_predictor_answers_questions_with_options_and_texts_apart(choice_run):
    predictor = Predictor.from_pretrained(choice_run, mixed_precision="no")
    answers = predictor.predict([{"question": "what barks ?", "choices": ["cat", "dog"]}, "the team won",
                                 {"question": "what is hot ?", "choices": ["ice", "snow", "sun"],
                                  "context": "in summer"}])
    assert set(answers[0]) == {"csqa", "quiz"} and answers[0]["csqa"]["label"] == "dog"
    assert set(answers[1]) == {"demo_topic"}
    assert 0.0 < answers[2]["quiz"]["score"] <= 1.0 and answers[2]["quiz"]["label"] in ("ice", "snow", "sun")
    assert predictor.predict({"question": "what barks ?", "choices": ["cat", "dog"]}, tasks="csqa") == {
        "csqa": answers[0]["csqa"]}
    with pytest.raises(PredictorInputError, match="task 'csqa' takes questions with options; input 0 is a"):
        predictor.predict("the team won", tasks=["csqa"])
    with pytest.raises(PredictorInputError, match="input 0: choices must be a non-empty list of non-empty"):
        predictor.predict({"question": "what barks ?", "choices": []})


def test_questions_batched_by_length_are_answered_in_order_as_one_by_one(choice_run):
    predictor = Predictor.from_pretrained(choice_run, mixed_precision="no")
    questions = [{"question": question, "choices": options, **({"context": "at home"} if index % 2 else {})}
                 for index, (question, options, _) in enumerate(QUESTIONS * 2)]
    questions.append({"question": "where do you keep milk in a very long question ?", "choices": ["x"]})
    alone = [predictor.predict(question) for question in questions]
    predictor.batch_size = 2  # batches mix questions of 1 to 4 options and of every length
    batched = predictor.predict(questions)
    for one, many in zip(alone, batched):
        for task in ("csqa", "quiz"):
            assert many[task]["label"] == one[task]["label"]
            assert many[task]["score"] == pytest.approx(one[task]["score"], abs=1e-5)


def test_predict_reads_questions_as_json_lines(choice_run, tmp_path, capsys):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text('the team won\n{"question": "what barks ?", "choices": ["cat", "dog"]}\n')
    assert cli_main(["predict", str(choice_run), str(inputs), "--precision", "no"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert set(lines[0]) == {"demo_topic"} and lines[1]["csqa"]["label"] == "dog"


@pytest.mark.parametrize("family", ["bert", *FAMILIES])
def test_every_family_exports_to_its_multiple_choice_model(tmp_path, tiny_model_dir, tiny_tokenizer, family):
    encoder = (BertModel.from_pretrained(tiny_model_dir) if family == "bert"
               else tiny_encoder(family, len(tiny_tokenizer)))
    model = MultiTaskModel(encoder, [HeadConfig(name="mc", type="multiple_choice", pooling="pooler")])
    with torch.no_grad():
        model.heads["mc"].classifier.weight.normal_(0, 2.0)
    model.save_pretrained(tmp_path / "ckpt", tokenizer=tiny_tokenizer, extra={"max_length": 64})
    folder = export_task(tmp_path / "ckpt", "mc", tmp_path / "mc")
    exported = AutoModelForMultipleChoice.from_pretrained(folder).eval()
    rows = tiny_tokenizer(["where do you keep milk ?"] * 3 + ["what barks ?"] * 3,
                          ["fridge", "oven", "garden", "cat", "dog", "a cow"], padding=True,
                          return_tensors="pt")
    inputs = {key: value.view(2, 3, -1) for key, value in rows.items()}
    with torch.no_grad():
        expected = MultiTaskModel.from_pretrained(tmp_path / "ckpt").eval().forward_all(**inputs)["mc"]
        torch.testing.assert_close(exported(**inputs).logits, expected, rtol=1e-4, atol=1e-4)


def test_the_server_answers_questions_with_options(choice_run):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mtl_nlp.serving.app import ServeSettings, create_app

    question = {"question": "what barks ?", "choices": ["cat", "dog"]}
    predictor = Predictor.from_pretrained(choice_run, mixed_precision="no")
    with TestClient(create_app(predictor, ServeSettings())) as client:
        both = client.post("/predict", json={"inputs": [question, "the team won"]}).json()
        assert both[0]["csqa"]["label"] == "dog" and set(both[1]) == {"demo_topic"}
        assert client.post("/tasks/csqa", json={"inputs": question}).json() == both[0]["csqa"]
        refused = client.post("/tasks/csqa", json={"inputs": "what barks"})
        assert refused.status_code == 422
        assert "takes questions with options" in refused.json()["error"]["message"]
        listed = {task["name"]: task["input"] for task in client.get("/tasks").json()["tasks"]}
        assert listed == {"csqa": "choices", "quiz": "choices", "demo_topic": "text"}


def test_the_benchmarks_plain_transformers_choices_equal_the_predictors(choice_run, tmp_path):
    from benchmarks.question_inference import plain_answerer

    predictor = Predictor.from_pretrained(choice_run, mixed_precision="no")
    export_task(choice_run, "csqa", tmp_path / "csqa")
    plain = plain_answerer(str(tmp_path / "csqa"), "multiple_choice", predictor.max_length, predictor.stride)
    items = [{"question": question, "choices": options} for question, options, _ in QUESTIONS]
    items.append({"question": "what is hot ?", "choices": ["ice", "sun"], "context": "in summer"})
    assert plain(items) == [answer["csqa"]["label"] for answer in predictor.predict(items, tasks="csqa")]
