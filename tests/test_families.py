"""Encoders of every family end to end: sharing shapes (ModernBERT's alternating global and
sliding-window layers included), the Predictor on every engine, and the family whose layers the
sharing shapes cannot reach (ALBERT) refused by name."""

from __future__ import annotations

import pytest
import torch
from encoder_families import FAMILIES, tiny_encoder
from test_export import TEXTS, assert_same_answers, heads, save_checkpoint, sharpen
from transformers import AutoModel, ModernBertModel

from mtl_nlp import MultiTaskModel, Predictor
from mtl_nlp.modeling.sharing import SharingError, SharingShape
from mtl_nlp.publish.export import export_task

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


def save_trained_and_reload(model, tokenizer, folder, texts) -> MultiTaskModel:
    """Make the private copies differ, as after training, save `model` to `folder`, and reload it:
    the reloaded model answers every task as the saved one does on `texts`."""
    with torch.no_grad():
        for copy in model.sharing.private.values():
            for parameter in copy.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
    save_checkpoint(folder, model, tokenizer)
    reloaded = MultiTaskModel.from_pretrained(folder).eval()
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    with torch.no_grad():
        for task, logits in model.forward_all(**batch).items():
            torch.testing.assert_close(reloaded.forward_all(**batch)[task], logits)
    return reloaded


@pytest.mark.parametrize("family", LAYERED)
def test_trained_private_layers_reload_and_export_as_the_task_model(family, tiny_tokenizer, tmp_path):
    model = sharpen(build(family, len(tiny_tokenizer), SharingShape(private_layers=1, freeze_layers=1)))
    assert not any(p.requires_grad for p in model.encoder.embeddings.parameters())
    save_trained_and_reload(model, tiny_tokenizer, tmp_path / "ckpt", TEXTS)
    for task in ("ner", "sentiment"):
        assert_same_answers(tmp_path / "ckpt", task, export_task(tmp_path / "ckpt", task, tmp_path / task))


# The families with a shaped case below run it in the fast suite; their hard-sharing case (the
# same engines, a plainer forward) runs with -m slow, which keeps the suite within its minutes.
SHAPED_TOO = ("distilbert", "deberta-v2", "modernbert")
SHAPED = [pytest.param(family, None, None, marks=[pytest.mark.slow] if family in SHAPED_TOO else [])
          for family in ["distilbert", "albert", "electra", "deberta-v2", "mpnet", "xlm-roberta",
                         "modernbert"]]
# a private top layer for the sentence heads and the NER head on the shared layer 1, at once: the
# stack replayed by name (DistilBERT) or with relative positions (DeBERTa), and ModernBERT's slots
SHAPED += [(family, SharingShape(private_layers=1), 1)
           for family in SHAPED_TOO]


@pytest.mark.parametrize("family, shape, ner_layer", SHAPED)
def test_the_predictor_answers_alike_on_every_engine(family, shape, ner_layer, tiny_tokenizer, tmp_path):
    pytest.importorskip("onnxruntime")
    model = build(family, len(tiny_tokenizer), shape, ner_layer) if family != "modernbert" else modernbert(
        len(tiny_tokenizer), shape, ner_layer)
    save_checkpoint(tmp_path / "ckpt", sharpen(model), tiny_tokenizer)
    texts = [*LONG_TEXTS, ("the film was great", "the film was bad")]
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


def test_albert_takes_hard_sharing_and_says_so(tiny_tokenizer):
    family = "albert"  # one layer's weights shared across its depth: no layers to copy or cut
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

    shape = SharingShape(private_layers=1) if family in ["bert", *LAYERED, "modernbert"] else None
    encoder = (AutoModel.from_pretrained(str(tiny_model_dir)) if family == "bert"
               else tiny_encoder(family, len(tiny_tokenizer)))
    model = MultiTaskModel(encoder, heads(None), shape)
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    wrapped = [name for name, module in model.named_modules() if policy(module)]
    layers = [name for name in wrapped if not name.endswith("embeddings")]
    if shape:  # the shared bottom layer, and the top layer's copy of each of the 4 tasks
        assert len(layers) == 5 and sum(".private." in name for name in layers) == 4, wrapped
    else:  # ALBERT: its one layer group, shared by its depth
        assert len(layers) == 1, wrapped


# ModernBERT, 4 layers: global, sliding-window, global, sliding-window attention, each window 5
# tokens wide, so that on these texts every layer's attention kind changes what it computes.
LONG_TEXTS = ["anna schmidt lives in new york and peter went to paris today .",
              "acme corp opened in berlin today", "the film was great", "peter went to paris"]


def modernbert(vocab_size, shape=None, ner_layer=None):
    encoder = tiny_encoder("modernbert", vocab_size, num_layers=4, local_attention=4)
    return MultiTaskModel(encoder, heads(ner_layer), shape).eval()


def cut_modernbert(model, layers: int) -> ModernBertModel:
    """The shared encoder of a hard-sharing `model` cut to its bottom `layers` layers, as
    transformers builds it from a config of that depth."""
    config = model.encoder.config.__class__(**{**model.encoder.config.to_dict(), "num_hidden_layers": layers,
                                                "layer_types": model.encoder.config.layer_types[:layers]})
    cut = ModernBertModel(config).eval()
    cut.load_state_dict(model.encoder.state_dict(), strict=False)
    return cut


def test_modernbert_private_layers_run_with_the_attention_kind_of_their_place(tiny_tokenizer):
    batch = dict(tiny_tokenizer(LONG_TEXTS, padding=True, return_tensors="pt"))
    hard = modernbert(len(tiny_tokenizer))
    assert hard.encoder.config.layer_types == ["full_attention", "sliding_attention"] * 2
    split = modernbert(len(tiny_tokenizer), SharingShape(private_layers=2))
    assert [type(layer).__name__ for layer in split.encoder.layers] == ["ModernBertEncoderLayer"] * 2 + [
        "LayerSlot"] * 2  # a slot keeps each private layer's place, so the model prepares its inputs
    assert [layer.attention_type for layer in split.sharing.private["ner"].layer] == [
        "full_attention", "sliding_attention"]
    with torch.no_grad():
        expected = hard.forward_all(**batch)
        for task, logits in split.forward_all(**batch).items():  # copies start as the pretrained layers
            torch.testing.assert_close(logits, expected[task])
        # the places' kinds matter here: every layer attending globally answers otherwise
        for layer in hard.encoder.layers:
            layer.attention_type = "full_attention"
        assert not torch.allclose(hard.forward_all(**batch)["ner"], expected["ner"])


@pytest.mark.parametrize("ner_layer", [1, 2, 3])
def test_a_modernbert_head_on_layer_n_reads_the_encoder_cut_to_n_layers(tiny_tokenizer, ner_layer):
    batch = dict(tiny_tokenizer(LONG_TEXTS, padding=True, return_tensors="pt"))
    model = modernbert(len(tiny_tokenizer), ner_layer=ner_layer)
    with torch.no_grad():
        states = model.task_states(**batch)
        cut = cut_modernbert(model, ner_layer)(**batch).last_hidden_state  # final norm included
        torch.testing.assert_close(states["ner"], cut)
        torch.testing.assert_close(states["sentiment"], model.encoder(**batch).last_hidden_state)
        torch.testing.assert_close(model.task_states(**batch, tasks=["ner"])["ner"], cut)


def test_modernbert_private_layers_and_shared_layers_train(tiny_tokenizer):
    model = modernbert(len(tiny_tokenizer), SharingShape(private_layers=2, soft_l2=0.1)).train()
    batch = dict(tiny_tokenizer(LONG_TEXTS[:2], padding=True, return_tensors="pt"))
    model(task="sentiment", **batch, labels=torch.tensor([0, 1]))["loss"].backward()
    for name, parameter in model.named_parameters():
        # the shared layers and final norm, the task's head, and every private copy (the soft L2 pull)
        reached = name.startswith(("encoder.", "heads.sentiment.", "sharing.private."))
        assert (parameter.grad is not None) == reached, name


def test_modernbert_keeps_a_shared_layer(tiny_tokenizer):
    with pytest.raises(SharingError, match="leaves ModernBertModel no shared layer; keep at least one "
                                           r"\(sharing.private_layers=3 at most\)"):
        modernbert(len(tiny_tokenizer), SharingShape(private_layers=4))


def test_modernbert_freezes_its_bottom_layers(tiny_tokenizer):
    model = modernbert(len(tiny_tokenizer), SharingShape(freeze_layers=2))
    frozen = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    assert {name.split(".")[1] for name in frozen} == {"embeddings", "layers"}
    assert {name.split(".")[2] for name in frozen if ".layers." in name} == {"0", "1"}
    with pytest.raises(SharingError, match="exceeds the 2 shared layers"):
        modernbert(len(tiny_tokenizer), SharingShape(private_layers=2, freeze_layers=3))


@pytest.mark.parametrize("shape, ner_layer", [(SharingShape(private_layers=2, freeze_layers=1), None),
                                              (SharingShape(private_layers=1), 3),
                                              (SharingShape(private_layers=3), None)])
def test_trained_modernbert_private_layers_reload_and_export_as_the_task_model(
        tiny_tokenizer, tmp_path, shape, ner_layer):
    model = sharpen(modernbert(len(tiny_tokenizer), shape, ner_layer))
    reloaded = save_trained_and_reload(model, tiny_tokenizer, tmp_path / "ckpt", LONG_TEXTS)
    kinds = ["full_attention", "sliding_attention"] * 2  # each place's attention kind
    for copy in reloaded.sharing.private.values():
        assert [layer.attention_type for layer in copy.layer] == kinds[4 - shape.private_layers:]
    shared = AutoModel.from_pretrained(tmp_path / "ckpt")  # the shared bottom layers load as they are
    assert len(shared.layers) == shared.config.num_hidden_layers == 4 - shape.private_layers
    assert shared.config.layer_types == kinds[:4 - shape.private_layers]
    assert model.encoder.config.num_hidden_layers == 4  # while the live model keeps every place
    for task in ("ner", "sentiment"):
        assert_same_answers(tmp_path / "ckpt", task, export_task(tmp_path / "ckpt", task, tmp_path / task))
