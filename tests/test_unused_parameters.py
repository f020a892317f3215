"""DDP runs without its unused-parameter search: the parameters each task leaves without a gradient
are found once, exactly, and a zero term gives them one."""

import torch

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.modeling.sharing import SharingShape
from mtl_nlp.training.unused_parameters import parameters_unused_by, zero_touching


def names(model, parameters):
    by_id = {id(p): name for name, p in model.named_parameters()}
    return sorted(by_id[id(p)] for p in parameters)


def test_each_task_leaves_the_other_heads_and_the_unread_layers_unused(tiny_model_dir):
    heads = [
        HeadConfig(name="ner", type="token_classification", labels=["O", "B-PER", "I-PER"], layer=1),
        HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"]),
    ]
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), heads, SharingShape(freeze_embeddings=True))
    model.train()
    state = torch.get_rng_state()
    unused = parameters_unused_by(model, ["ner", "sentiment"])
    assert torch.equal(torch.get_rng_state(), state) and model.training  # no dropout draw, mode kept
    pooler = ["encoder.pooler.dense.bias", "encoder.pooler.dense.weight"]
    layer_2 = sorted(name for name, p in model.named_parameters()
                     if name.startswith("encoder.encoder.layer.1.") and p.requires_grad)
    assert names(model, unused["sentiment"]) == sorted(["heads.ner.classifier.bias",
                                                        "heads.ner.classifier.weight", *pooler])
    # NER reads layer 1 of 2: the top layer is unused by it too; frozen embeddings are not listed.
    sentiment = [name for name, _ in model.heads["sentiment"].named_parameters(prefix="heads.sentiment")]
    assert names(model, unused["ner"]) == sorted([*pooler, *layer_2, *sentiment])


def test_the_zero_term_is_zero_and_reaches_every_parameter():
    first, second = torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.full((4,), 7.0))
    zero = zero_touching([first, second])
    zero.backward()
    assert float(zero) == 0.0
    assert torch.equal(first.grad, torch.zeros(2, 3)) and torch.equal(second.grad, torch.zeros(4))
    assert zero_touching([]) == 0.0
