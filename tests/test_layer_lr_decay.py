"""Layer-wise learning-rate decay (train.layer_lr_decay): the top layer learns at lr, each layer
below at the decay times the one above, the embeddings lowest; private copies learn as their
layer does; heads at lr (or head_lr). Every encoder family of the families table."""

from __future__ import annotations

import pytest
from encoder_families import FAMILIES, tiny_encoder

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.config import ConfigError, load_config
from mtl_nlp.modeling.depths import parameter_depths
from mtl_nlp.modeling.sharing import SharingShape
from mtl_nlp.training.optim import build_optimizer

HEADS = [HeadConfig(name="topic", type="classification", labels=["a", "b"], pooling="pooler"),
         HeadConfig(name="ner", type="token_classification", labels=["O", "B-X", "I-X"])]


def rates_by_name(model, optimizer) -> dict[str, float]:
    rate_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    return {name: rate_of[id(p)] for name, p in model.named_parameters() if p.requires_grad}


def test_each_layer_learns_at_the_decay_times_the_one_above(tiny_model_dir):
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS, SharingShape(private_layers=1))
    rates = rates_by_name(model, build_optimizer(model, lr=1e-3, weight_decay=0.01, head_lr=5e-3,
                                                 layer_lr_decay=0.5))
    # the tiny BERT has 2 layers: layer 2 (each task's private copy) at lr, layer 1 at 0.5 lr,
    # the embeddings at 0.25 lr; the heads at head_lr
    expected = {"encoder.embeddings.word_embeddings.weight": 2.5e-4,
                "encoder.embeddings.LayerNorm.weight": 2.5e-4,
                "encoder.encoder.layer.0.attention.self.query.weight": 5e-4,
                "encoder.encoder.layer.0.output.dense.bias": 5e-4,
                "sharing.private.topic.layer.0.attention.self.query.weight": 1e-3,
                "sharing.private.ner.layer.0.output.LayerNorm.bias": 1e-3,
                "heads.topic.classifier.weight": 5e-3,
                "heads.ner.classifier.bias": 5e-3}
    assert {name: rates[name] for name in expected} == pytest.approx(expected)
    assert sorted(set(rates.values())) == pytest.approx([2.5e-4, 5e-4, 1e-3, 5e-3])


def test_no_decay_keeps_one_rate_for_the_encoder(tiny_model_dir):
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS)
    for decay in (None, 1.0):
        rates = rates_by_name(model, build_optimizer(model, lr=1e-3, weight_decay=0.01, layer_lr_decay=decay))
        assert set(rates.values()) == {1e-3}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_its_embeddings_lowest_and_its_layers_in_order(family, tiny_tokenizer):
    model = MultiTaskModel(tiny_encoder(family, len(tiny_tokenizer), num_layers=3), HEADS)
    depths, total = parameter_depths(model)
    assert total == 3
    encoder_depths = {name: depth for name, depth in depths.items() if name.startswith("encoder.")}
    embeddings = {depth for name, depth in encoder_depths.items() if "embedding" in name}
    assert embeddings == {0}
    if family == "albert":  # one layer group's weights at every depth: learned at the top's rate
        assert set(encoder_depths.values()) - {0} <= {3, 4}
    else:
        assert {1, 2, 3} <= set(encoder_depths.values()) <= {0, 1, 2, 3, 4}
        for name, depth in encoder_depths.items():
            for index in range(3):  # a name holding layer `index` of the list sits at its depth
                if f"layer.{index}." in name or f"layers.{index}." in name:
                    assert depth == index + 1, name
    assert all(depth == 4 for name, depth in depths.items() if name.startswith("heads."))
    rates = rates_by_name(model, build_optimizer(model, lr=1.0, weight_decay=0.0, layer_lr_decay=0.5))
    assert {rates[name] for name in encoder_depths if "embedding" in name} == {0.125}


def test_the_config_key_is_checked():
    assert load_config(None, ["train.layer_lr_decay=0.9"]).train.layer_lr_decay == 0.9
    with pytest.raises(ConfigError, match="train.layer_lr_decay must be in \\(0, 1\\]"):
        load_config(None, ["train.layer_lr_decay=1.5"])
    with pytest.raises(ConfigError, match="train.layer_lr_decay must be positive"):
        load_config(None, ["train.layer_lr_decay=0"])
