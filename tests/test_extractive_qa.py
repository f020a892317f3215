"""Extractive question answering: windows of a context and their answer labels, bad rows, training
in a mix and scoring with SQuAD's metrics, the Predictor, `mtl-nlp serve` and the export of every
family to AutoModelForQuestionAnswering."""

from __future__ import annotations

import json

import pytest
import torch
from encoder_families import FAMILIES, tiny_encoder
from transformers import AutoModelForQuestionAnswering, BertModel

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.cli import main as cli_main
from mtl_nlp.common.errors import DataError
from mtl_nlp.data.answers import encode_questions
from mtl_nlp.inference import Predictor, PredictorInputError
from mtl_nlp.publish.export import export_task
from mtl_nlp.registry import TaskSpec

CONTEXT = "anna lives in berlin and works in paris . the cat sat on the mat near the door ."
SPEC = TaskSpec(name="qa", type="extractive_qa", data_files={"train": "x.jsonl"}, format="json")
FACTS = [("anna lives in berlin and works in paris .", "where does anna live ?", "berlin"),
         ("the cat sat on the mat near the door .", "where did the cat sit ?", "on the mat"),
         ("john bought three apples at the market today .", "how many apples ?", "three")]


def encode(tokenizer, answers, split="validation", context=CONTEXT, question="where ?"):
    batch = {"question": [question], "context": [context], "answers": [answers]}
    return encode_questions(batch, [7], tokenizer=tokenizer, spec=SPEC, max_length=24, stride=4, split=split)


def test_each_window_is_labelled_with_the_answer_it_holds(tiny_tokenizer):
    windows = encode(tiny_tokenizer, {"text": ["paris"], "answer_start": [CONTEXT.index("paris")]})
    assert windows["example_index"] == [7, 7, 7] and len(windows["input_ids"]) == 3
    read = []
    for (first, last), offsets in zip(windows["labels"], windows["offsets"]):
        read.append(None if (first, last) == (0, 0) else CONTEXT[offsets[first][0]:offsets[last][1]])
    assert read == ["paris", "paris", None]  # in the first two windows (they overlap), not the third
    covered = [[span for span in offsets if span != [-1, -1]] for offsets in windows["offsets"]]
    assert covered[0][0][0] == 0 and covered[-1][-1][1] == len(CONTEXT)  # the windows cover it all
    assert windows["gold"] == [["paris"]] * 3 and windows["context"] == [CONTEXT] * 3


def test_a_misplaced_answer_start_is_found_and_no_answer_points_at_the_first_token(tiny_tokenizer):
    misplaced = encode(tiny_tokenizer, {"text": ["berlin"], "answer_start": [0]}, split="train")
    assert misplaced["labels"][0] != [0, 0] and "gold" not in misplaced  # training rows keep no gold
    unanswerable = encode(tiny_tokenizer, {"text": [], "answer_start": []})
    assert unanswerable["labels"] == [[0, 0]] * 3 and unanswerable["gold"] == [[]] * 3


@pytest.mark.parametrize(("answers", "question", "message"), [
    ({"text": ["rome"], "answer_start": [3]}, "where ?",
     "split validation, row 7: answer 'rome' is not in its context"),
    ({"text": ["paris", "berlin"], "answer_start": [0]}, "where ?", "2 answer texts for 1 answer starts"),
    ({"text": ["paris"], "answer_start": [0]}, "where does anna work when she is not at home ?",
     r"row 7: the question leaves its context -?\d+ of max_length=24 tokens, no more than the stride \(4\)"),
])
def test_a_bad_row_is_an_error_naming_it(tiny_tokenizer, answers, question, message):
    with pytest.raises(DataError, match=message):
        encode(tiny_tokenizer, answers, question=question)


def write_facts(folder) -> dict[str, str]:
    files = {}
    for split, repeat in (("train", 12), ("validation", 2), ("test", 2)):
        rows = [{"id": f"{split}{index}", "context": context, "question": question,
                 "answers": {"text": [answer], "answer_start": [context.index(answer)]}}
                for index, (context, question, answer) in enumerate(FACTS * repeat)]
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        files[split] = str(path)
    return files


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("qa")
    files = json.dumps(write_facts(folder))
    tasks = f"tasks=[{{name: facts, type: extractive_qa, format: json, data_files: {files}}}, demo_topic]"
    out = folder / "run"
    assert cli_main(["train", f"model={tiny_model_dir}", f"cache_dir={folder / 'cache'}",
                     "mixed_precision=no", "train.batch_size=4", "train.lr=5e-3", "train.max_steps=40",
                     "max_length=32", "stride=4", "max_eval_examples=8", "max_train_examples=40",
                     f"output_dir={out}", tasks]) == 0
    return out


def test_a_mix_with_extractive_qa_trains_and_scores_with_squad_metrics(qa_run):
    metrics = json.loads((qa_run / "metrics.json").read_text())
    assert set(metrics["facts"]) == {"exact_match", "f1"} and metrics["main_metrics"]["facts"] == "f1"
    assert metrics["facts"]["f1"] >= metrics["facts"]["exact_match"] > 0.5  # three facts, seen in training
    assert MultiTaskModel.from_pretrained(qa_run).head_configs["facts"].type == "extractive_qa"


def test_the_predictor_answers_with_a_span_of_the_context(qa_run):
    predictor = Predictor.from_pretrained(qa_run, mixed_precision="no")
    context = "the weather is fine . " + FACTS[0][0] + " the end ."
    answers = predictor.predict([{"question": "where does anna live ?", "context": context}, "the team won"])
    answer = answers[0]["facts"]
    assert context[answer["start"]:answer["end"]] == answer["answer"] and 0 < answer["score"] <= 1
    assert set(answers[1]) == {"demo_topic"}
    long_question = {"question": " ".join(["where"] * 30), "context": FACTS[0][0]}
    with pytest.raises(PredictorInputError, match=r"question 0 leaves its context -?\d+ of max_length=32 "
                                                  r"tokens, no more than the stride \(4\)"):
        predictor.predict(long_question)
    with pytest.raises(PredictorInputError, match="task 'facts' takes questions with a context; input 0 is"):
        predictor.predict("where does anna live ?", tasks="facts")
    with pytest.raises(PredictorInputError, match=r"input 0 is a mapping of the keys \['question', 'text'\]"):
        predictor.predict({"question": "where ?", "text": "x"})


def test_windows_batched_by_length_answer_in_order_as_one_by_one(qa_run):
    predictor = Predictor.from_pretrained(qa_run, mixed_precision="no")
    long_context = " ".join(context for context, _, _ in FACTS * 3)  # several windows of 32 tokens
    questions = [{"question": question, "context": context} for context, question, _ in FACTS]
    questions += [{"question": question, "context": long_context} for _, question, _ in FACTS]
    alone = [predictor.predict(question) for question in questions]
    predictor.batch_size = 3  # each pass mixes windows of several questions and lengths
    batched = predictor.predict(questions)
    for one, many in zip(alone, batched):
        assert (many["facts"]["answer"], many["facts"]["start"], many["facts"]["end"]) == \
            (one["facts"]["answer"], one["facts"]["start"], one["facts"]["end"])
        assert many["facts"]["score"] == pytest.approx(one["facts"]["score"], abs=1e-5)


def test_predict_and_serve_read_questions_with_a_context(qa_run, tmp_path, capsys):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mtl_nlp.serving.app import ServeSettings, create_app

    question = {"question": "how many apples ?", "context": FACTS[2][0]}
    (tmp_path / "inputs.txt").write_text(json.dumps(question) + "\n")
    assert cli_main(["predict", str(qa_run), str(tmp_path / "inputs.txt"), "--precision", "no"]) == 0
    predicted = json.loads(capsys.readouterr().out)["facts"]
    predictor = Predictor.from_pretrained(qa_run, mixed_precision="no")
    with TestClient(create_app(predictor, ServeSettings())) as client:
        assert client.post("/tasks/facts", json={"inputs": question}).json() == pytest.approx(predicted)
        served = client.post("/predict", json={"inputs": [question]}).json()[0]["facts"]
        assert served == pytest.approx(predicted)
        listed = {task["name"]: task["input"] for task in client.get("/tasks").json()["tasks"]}
        assert listed["facts"] == "question"


@pytest.mark.parametrize("family", ["bert", *FAMILIES])
def test_every_family_exports_to_its_question_answering_model(
        tmp_path, tiny_model_dir, tiny_tokenizer, family):
    encoder = (BertModel.from_pretrained(tiny_model_dir) if family == "bert"
               else tiny_encoder(family, len(tiny_tokenizer)))
    model = MultiTaskModel(encoder, [HeadConfig(name="qa", type="extractive_qa")])
    with torch.no_grad():
        model.heads["qa"].qa_outputs.weight.normal_(0, 2.0)
    model.save_pretrained(tmp_path / "ckpt", tokenizer=tiny_tokenizer, extra={"max_length": 64})
    folder = export_task(tmp_path / "ckpt", "qa", tmp_path / "qa")
    exported = AutoModelForQuestionAnswering.from_pretrained(folder)
    inputs = tiny_tokenizer(["where does anna live ?"], [FACTS[0][0]], return_tensors="pt")
    with torch.no_grad():
        expected = MultiTaskModel.from_pretrained(tmp_path / "ckpt").eval().forward_all(**inputs)["qa"]
        outputs = exported.eval()(**inputs)
    torch.testing.assert_close(outputs.start_logits, expected[..., 0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outputs.end_logits, expected[..., 1], rtol=1e-4, atol=1e-4)


def test_no_answer_is_a_key_of_extractive_qa_tasks_and_reaches_the_head():
    from mtl_nlp.registry import TaskError
    from mtl_nlp.training.setup import head_config

    with pytest.raises(TaskError, match="no_answer is for extractive_qa tasks, not classification"):
        TaskSpec(name="x", type="classification", data_files={"train": "x.jsonl"}, format="json",
                 no_answer=True)
    squad2 = TaskSpec(name="squad2", type="extractive_qa", dataset="rajpurkar/squad_v2", no_answer=True)
    assert head_config(squad2, []).no_answer is True and squad2.context_column == "context"


def test_the_onnx_engine_answers_questions_as_torch_does(qa_run):
    pytest.importorskip("onnxruntime")
    question = {"question": "how many apples ?", "context": FACTS[2][0]}
    expected = Predictor.from_pretrained(qa_run, mixed_precision="no").predict(question)["facts"]
    answered = Predictor.from_pretrained(qa_run, backend="onnx").predict(question)["facts"]
    assert (answered["answer"], answered["start"], answered["end"]) == (
        expected["answer"], expected["start"], expected["end"])
    assert answered["score"] == pytest.approx(expected["score"], abs=1e-4)


def test_the_benchmarks_plain_transformers_answers_equal_the_predictors(qa_run, tmp_path):
    from benchmarks.question_inference import plain_answerer

    predictor = Predictor.from_pretrained(qa_run, mixed_precision="no")
    export_task(qa_run, "facts", tmp_path / "facts")
    plain = plain_answerer(str(tmp_path / "facts"), "extractive_qa", predictor.max_length, predictor.stride)
    items = [{"question": question, "context": "a long day . " + context + " the end ."}
             for context, question, _ in FACTS]
    assert plain(items) == [answer["facts"]["answer"] for answer in predictor.predict(items, tasks="facts")]
