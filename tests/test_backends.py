"""The Predictor's engines (mtl_nlp.inference.BACKENDS): torch.compile and ONNX Runtime give the
same answers as torch (a head reading a layer mix among them; fp32 within 1e-4; int8 weights
close), the ONNX export is cached beside the checkpoint, and an unknown engine is a clear error."""

import importlib.util

import pytest
import torch

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.inference import BackendError, Predictor
from mtl_nlp.inference.onnx_engine import onnx_runner

needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnxscript")),
    reason="needs the onnx extra",
)

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TEXTS = ["anna schmidt visited new yorkers in the u.s. today .", "the film was dull", "york",
         " ".join(["anna visited york"] * 30)]  # longer than max_length: tagged in windows
PAIRS = [("the film was dull", "the story was dull"), ("anna", "york")]


@pytest.fixture(scope="module")
def checkpoint(tiny_model_dir, pair_tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    heads = [
        HeadConfig(name="ner", type="token_classification", labels=TAGS),
        HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"],
                   pooling="pooler", layer_mix=True),  # a learned mix of every layer
        HeadConfig(name="similarity", type="regression", pooling="pooler", text_pair=True),
    ]
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), heads)
    for parameter in model.heads.parameters():  # a random model with opinions: larger head weights
        torch.nn.init.normal_(parameter, std=0.5)
    directory = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(directory, tokenizer=pair_tokenizer, extra={"max_length": 32})
    return directory


def assert_same_answers(ours, theirs, tolerance):
    for mine, reference in zip(ours, theirs):
        assert mine.keys() == reference.keys()
        for task, answer in mine.items():
            if task == "ner":
                assert [(e["label"], e["start"], e["end"]) for e in answer] == [
                    (e["label"], e["start"], e["end"]) for e in reference[task]]
                for entity, expected in zip(answer, reference[task]):
                    assert entity["score"] == pytest.approx(expected["score"], abs=tolerance)
            elif task == "sentiment":
                assert answer["label"] == reference[task]["label"]
                assert answer["score"] == pytest.approx(reference[task]["score"], abs=tolerance)
            else:
                assert answer["value"] == pytest.approx(reference[task]["value"], abs=tolerance)


def test_torch_compile_answers_every_task_as_torch_does(checkpoint):
    """Texts, a text tagged in windows, and pairs: the compiled forward gives the same answers."""
    inputs = [*TEXTS, *PAIRS]
    reference = Predictor.from_pretrained(checkpoint, mixed_precision="no").predict(inputs)
    compiled = Predictor.from_pretrained(checkpoint, mixed_precision="no", backend="torch-compile")
    assert_same_answers(compiled.predict(inputs), reference, 1e-4)
    assert_same_answers(compiled.predict(inputs[::-1]), reference[::-1], 1e-4)  # other batch shapes


@needs_onnx
def test_onnx_answers_every_task_as_torch_does(checkpoint):
    torch_predictor = Predictor.from_pretrained(checkpoint, mixed_precision="no")
    onnx_predictor = Predictor.from_pretrained(checkpoint, backend="onnx")
    inputs = [*TEXTS, *PAIRS]
    assert_same_answers(onnx_predictor.predict(inputs), torch_predictor.predict(inputs), 1e-4)
    exports = list((checkpoint / "onnx").glob("*/model.onnx"))
    assert len(exports) == 1  # exported once, beside the checkpoint, and reused
    stamp = exports[0].stat().st_mtime_ns
    Predictor.from_pretrained(checkpoint, backend="onnx")
    assert exports[0].stat().st_mtime_ns == stamp


@needs_onnx
def test_int8_weights_answer_close_to_fp32(checkpoint):
    reference = Predictor.from_pretrained(checkpoint, mixed_precision="no").predict(PAIRS)
    int8 = Predictor.from_pretrained(checkpoint, backend="onnx-int8").predict(PAIRS)
    assert [a["similarity"]["value"] for a in int8] == pytest.approx(
        [a["similarity"]["value"] for a in reference], abs=0.05)
    import onnx

    folder = next((checkpoint / "onnx").iterdir())
    operators = {node.op_type for node in onnx.load(str(folder / "model.int8.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= operators  # int8 matrix products


def test_an_unknown_backend_names_the_choices(checkpoint):
    model = MultiTaskModel.from_pretrained(checkpoint)
    with pytest.raises(BackendError, match="backend 'tensorrt' is not one of: onnx, onnx-int8"):
        onnx_runner(model, None, "tensorrt", torch.device("cpu"))
    choices = "torch, torch-compile, onnx, onnx-int8"
    with pytest.raises(BackendError, match=f"backend 'tensorrt' is not one of: {choices}"):
        Predictor.from_pretrained(checkpoint, backend="tensorrt")


@needs_onnx
def test_the_predict_command_runs_on_onnx(checkpoint, tmp_path):
    import json

    from mtl_nlp.cli import main as cli_main

    inputs = tmp_path / "texts.txt"
    inputs.write_text("anna schmidt visited york\nthe film was dull\tthe story was dull\n")
    for backend in ("torch", "onnx"):
        assert cli_main(["predict", str(checkpoint), str(inputs), "--backend", backend, "--precision", "no",
                         "--output", str(tmp_path / f"{backend}.jsonl")]) == 0
    answers = {backend: [json.loads(line) for line in (tmp_path / f"{backend}.jsonl").read_text().split("\n")
                         if line] for backend in ("torch", "onnx")}
    assert len(answers["onnx"]) == 2
    assert_same_answers(answers["onnx"], answers["torch"], 1e-4)


@pytest.fixture(scope="module")
def adapter_checkpoint(tiny_model_dir, pair_tokenizer, tmp_path_factory):
    """Per-task LoRA adapters (peft) in the top layer, with effects of their own: the forward runs
    the bottom layer once and each adapter's top layer on its output (a pass per task otherwise)."""
    pytest.importorskip("peft")
    from mtl_nlp.modeling.adapters import AdapterShape
    from mtl_nlp.modeling.sharing import SharingShape

    torch.manual_seed(0)
    heads = [HeadConfig(name="ner", type="token_classification", labels=TAGS),
             HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"],
                        pooling="pooler")]
    shape = SharingShape(adapters=AdapterShape(layers=1))
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), heads, shape)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name or name.startswith("heads."):
                torch.nn.init.normal_(parameter, std=0.5)
    directory = tmp_path_factory.mktemp("adapter-checkpoint")
    model.save_pretrained(directory, tokenizer=pair_tokenizer, extra={"max_length": 32})
    return directory


@pytest.mark.parametrize("backend", ["torch-compile", pytest.param("onnx", marks=needs_onnx)])
def test_every_engine_answers_through_the_tasks_adapters(adapter_checkpoint, backend):
    reference = Predictor.from_pretrained(adapter_checkpoint, mixed_precision="no").predict(TEXTS)
    engine = Predictor.from_pretrained(adapter_checkpoint, mixed_precision="no", backend=backend)
    assert_same_answers(engine.predict(TEXTS), reference, 1e-4)
