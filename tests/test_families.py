"""Encoders of every family end to end: sharing shapes, the Predictor on every engine, and the
families whose layers the sharing shapes cannot reach refused by name."""

from __future__ import annotations

import pytest
import torch
from encoder_families import FAMILIES, tiny_encoder
from test_export import TEXTS, assert_same_answers, heads, save_checkpoint, sharpen
from transformers import AutoModel

from mtl_nlp import MultiTaskModel, Predictor
from mtl_nlp.export import export_task
from mtl_nlp.modeling.sharing import SharingError, SharingShape

LAYERED = ["distilbert", "electra", "deberta-v2", "mpnet", "xlm-roberta"]  # layers in a `.layer` stack


@pytest.fixture
def batch(tiny_tokenizer):
    return dict(tiny_tokenizer(TEXTS, padding=True, return_tensors="pt"))


def build(family, vocab_size, shape=None, ner_layer=None):
    return MultiTaskModel(tiny_encoder(family, vocab_size), heads(ner_layer), shape).eval()


@pytest.mark.parametrize("family", LAYERED)
def test_private_layers_and_lower_heads_read_the_layers_they_name(family, tiny_tokenizer, batch):
    hard = build(family, len(tiny_tokenizer))
    split = build(family, len(tiny_tokenizer), SharingShape(private_layers=1))
    with torch.no_grad():
        expected = hard.forward_all(**batch)
        for task, logits in split.forward_all(**batch).items():  # copies start as the pretrained layers
            torch.testing.assert_close(logits, expected[task])
        lower = build(family, len(tiny_tokenizer), ner_layer=1)
        first_layer = lower.encoder(**batch, output_hidden_states=True).hidden_states[1]
        torch.testing.assert_close(lower.forward_all(**batch, tasks=["ner"])["ner"],
                                   lower.heads["ner"](first_layer, batch["attention_mask"]))


@pytest.mark.parametrize("family", LAYERED)
def test_trained_private_layers_reload_and_export_as_the_task_model(family, tiny_tokenizer, tmp_path):
    model = sharpen(build(family, len(tiny_tokenizer), SharingShape(private_layers=1, freeze_layers=1)))
    assert not any(p.requires_grad for p in model.encoder.embeddings.parameters())
    with torch.no_grad():  # private copies that differ, as after training
        for copy in model.sharing.private.values():
            for parameter in copy.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
    save_checkpoint(tmp_path / "ckpt", model, tiny_tokenizer)
    reloaded = MultiTaskModel.from_pretrained(tmp_path / "ckpt").eval()
    batch = dict(tiny_tokenizer(TEXTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        for task, logits in model.forward_all(**batch).items():
            torch.testing.assert_close(reloaded.forward_all(**batch)[task], logits)
    for task in ("ner", "sentiment"):
        assert_same_answers(tmp_path / "ckpt", task, export_task(tmp_path / "ckpt", task, tmp_path / task))


@pytest.mark.parametrize("family", ["distilbert", "albert", "electra", "deberta-v2", "mpnet", "xlm-roberta",
                                    "modernbert"])
def test_the_predictor_answers_alike_on_every_engine(family, tiny_tokenizer, tmp_path):
    pytest.importorskip("onnxruntime")
    save_checkpoint(tmp_path / "ckpt", sharpen(build(family, len(tiny_tokenizer))), tiny_tokenizer)
    texts = [*TEXTS, ("the film was great", "the film was bad")]
    reference = Predictor.from_pretrained(tmp_path / "ckpt", mixed_precision="no").predict(texts)
    for backend in ("torch-compile", "onnx"):
        engine = Predictor.from_pretrained(tmp_path / "ckpt", mixed_precision="no", backend=backend)
        answers = engine.predict(texts)
        for mine, theirs in zip(answers, reference):
            assert mine.keys() == theirs.keys()
            for task in mine:
                if task == "ner":
                    assert [(e["label"], e["start"], e["end"]) for e in mine[task]] == [
                        (e["label"], e["start"], e["end"]) for e in theirs[task]]
                elif task == "similarity":
                    assert mine[task]["value"] == pytest.approx(theirs[task]["value"], abs=1e-4)
                elif task == "sentiment":
                    assert mine[task]["label"] == theirs[task]["label"]
                    assert mine[task]["score"] == pytest.approx(theirs[task]["score"], abs=1e-4)
                else:
                    assert mine[task]["scores"] == pytest.approx(theirs[task]["scores"], abs=1e-4)


@pytest.mark.parametrize("family", ["albert", "modernbert"])
def test_families_without_a_layer_stack_take_hard_sharing_and_say_so(family, tiny_tokenizer):
    model = build(family, len(tiny_tokenizer))  # hard sharing trains and predicts
    batch = dict(tiny_tokenizer(TEXTS[:2], padding=True, return_tensors="pt"))
    assert model(task="sentiment", **batch, labels=torch.tensor([0, 1]))["loss"].isfinite()
    for shape in (SharingShape(private_layers=1), SharingShape(freeze_layers=1)):
        with pytest.raises(SharingError, match="is built another way: use hard sharing"):
            build(family, len(tiny_tokenizer), shape)


@pytest.mark.parametrize("family", ["bert", *FAMILIES])
def test_fsdp_wraps_every_transformer_layer_of_each_family(family, tiny_tokenizer, tiny_model_dir):
    """Accelerate's transformer-based wrap policy, built from the model as `accelerate launch
    --config_file recipes/accelerate/fsdp.yaml` builds it, makes each layer (private copies
    included) its own shard unit, also for families that declare no `_no_split_modules`."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    shape = SharingShape(private_layers=1) if family in ["bert", *LAYERED] else None
    encoder = (AutoModel.from_pretrained(str(tiny_model_dir)) if family == "bert"
               else tiny_encoder(family, len(tiny_tokenizer)))
    model = MultiTaskModel(encoder, heads(None), shape)
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    wrapped = [name for name, module in model.named_modules() if policy(module)]
    layers = [name for name in wrapped if not name.endswith("embeddings")]
    if shape:  # the shared bottom layer, and the top layer's copy of each of the 4 tasks
        assert len(layers) == 5 and sum(".private." in name for name in layers) == 4, wrapped
    else:  # ALBERT: its one layer group, shared by its depth; ModernBERT: its 2 layers
        assert len(layers) == {"albert": 1, "modernbert": 2}[family], wrapped
