"""Sharing shapes: private top layers, soft L2, heads on lower layers, frozen layers, and their
checkpoints."""

import pytest
import torch
from transformers import AlbertConfig, AlbertModel

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.inference import Predictor
from mtl_nlp.modeling.sharing import LayerSharing, SharingError, SharingShape
from mtl_nlp.training.optim import build_optimizer


def heads(ner_layer=None):
    return [
        HeadConfig(name="ner", type="token_classification", labels=["O", "B-PER", "I-PER"], layer=ner_layer),
        HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"]),
    ]


def build(model_dir, shape=None, ner_layer=None):
    torch.manual_seed(0)
    return MultiTaskModel.from_encoder(str(model_dir), heads(ner_layer), shape).eval()


@pytest.fixture
def batch(tiny_tokenizer):
    return tiny_tokenizer(["anna visited new york .", "the film is dull"], padding=True, return_tensors="pt")


def test_private_layers_start_as_the_pretrained_layers(tiny_model_dir, batch):
    hard = build(tiny_model_dir)
    split = build(tiny_model_dir, SharingShape(private_layers=1))
    assert len(split.encoder.encoder.layer) == 1 and split.encoder.config.num_hidden_layers == 1
    assert set(split.sharing.private) == {"ner", "sentiment"}
    assert all(len(stack.layer) == 1 for stack in split.sharing.private.values())
    for task, logits in hard.forward_all(**batch).items():
        torch.testing.assert_close(split.forward_all(**batch)[task], logits)
    shared = {id(p) for p in split.shared_parameters()}
    assert not shared & {id(p) for p in split.sharing.private.parameters()}


def test_private_layers_diverge_per_task(tiny_model_dir, batch):
    model = build(tiny_model_dir, SharingShape(private_layers=1))
    before = model.forward_all(**batch)
    with torch.no_grad():
        for parameter in model.sharing.private["ner"].parameters():
            parameter.add_(0.05)
    after = model.forward_all(**batch)
    assert not torch.allclose(after["ner"], before["ner"])
    torch.testing.assert_close(after["sentiment"], before["sentiment"])


def test_head_reads_the_layer_it_names_and_deeper_layers_do_not_run(tiny_model_dir, batch):
    model = build(tiny_model_dir, ner_layer=1)
    calls = []
    model.encoder.encoder.layer[1].register_forward_hook(lambda *args: calls.append(1))
    states = model.task_states(**batch, tasks=["ner"])
    reference = model.encoder(**batch, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(states["ner"], reference)
    assert len(calls) == 1  # only the reference call above ran layer 2
    both = model.task_states(**batch)
    torch.testing.assert_close(both["ner"], reference)
    torch.testing.assert_close(both["sentiment"], model.encoder(**batch).last_hidden_state)


def test_a_head_below_the_private_layers_reads_the_shared_stack(tiny_model_dir, batch):
    model = build(tiny_model_dir, SharingShape(private_layers=1), ner_layer=1)
    assert set(model.sharing.private) == {"sentiment"}
    reference = build(tiny_model_dir).encoder(**batch, output_hidden_states=True).hidden_states
    states = model.task_states(**batch)
    torch.testing.assert_close(states["ner"], reference[1])
    torch.testing.assert_close(states["sentiment"], reference[2])


def test_every_layer_private(tiny_model_dir, batch, tmp_path):
    hard = build(tiny_model_dir)
    model = build(tiny_model_dir, SharingShape(private_layers=2))
    assert len(model.encoder.encoder.layer) == 0
    torch.testing.assert_close(model.forward_all(**batch)["ner"], hard.forward_all(**batch)["ner"])
    model.save_pretrained(tmp_path)  # a checkpoint of no shared layer reloads its private ones
    reloaded = MultiTaskModel.from_pretrained(tmp_path).eval()
    for task, logits in model.forward_all(**batch).items():
        torch.testing.assert_close(reloaded.forward_all(**batch)[task], logits)


def test_soft_l2_penalty_by_hand(tiny_model_dir):
    model = build(tiny_model_dir, SharingShape(private_layers=1, soft_l2=0.1))
    assert float(model.sharing.penalty().detach()) == 0.0  # copies of the same layer
    count = sum(p.numel() for p in model.sharing.private["ner"].parameters())
    with torch.no_grad():
        for parameter in model.sharing.private["ner"].parameters():
            parameter.add_(0.2)
    # two copies 0.2 apart: each is 0.1 from the mean, 2 x 0.1^2 per parameter, times lambda.
    assert float(model.sharing.penalty().detach()) == pytest.approx(0.1 * 2 * 0.01 * count, rel=1e-4)
    assert build(tiny_model_dir, SharingShape(private_layers=1)).sharing.penalty() is None


def test_soft_l2_is_added_to_training_losses_only(tiny_model_dir, batch):
    model = build(tiny_model_dir, SharingShape(private_layers=1, soft_l2=0.1))
    with torch.no_grad():
        for parameter in model.sharing.private["ner"].parameters():
            parameter.add_(0.2)
    labels = torch.tensor([1, 0])
    plain = model(task="sentiment", **batch, labels=labels)["loss"]
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    pulled = model(task="sentiment", **batch, labels=labels)["loss"]
    penalty = float(model.sharing.penalty().detach())
    assert float((pulled - plain).detach()) == pytest.approx(penalty, rel=1e-4)


def test_freezing_the_whole_encoder_leaves_private_layers_and_heads(tiny_model_dir):
    model = build(tiny_model_dir, SharingShape(private_layers=1, freeze_encoder=True))
    trained = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trained == {"heads", "sharing"}
    assert not any(p.requires_grad for p in model.encoder.parameters())
    # freezing changes training, not the weights: a start for the unfrozen shape and back
    assert SharingShape(private_layers=1, num_layers=2).same_weights_as(model.sharing.shape)
    assert not SharingShape(private_layers=2, num_layers=2).same_weights_as(model.sharing.shape)


def test_freezing_embeddings_and_bottom_layers(tiny_model_dir):
    model = build(tiny_model_dir, SharingShape(freeze_layers=1))
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert any(name.startswith("encoder.embeddings.") for name in frozen)
    assert any(name.startswith("encoder.encoder.layer.0.") for name in frozen)
    assert not any(name.startswith("encoder.encoder.layer.1.") for name in frozen)
    optimized = {id(p) for group in build_optimizer(model, 1e-3, 0.01).param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in model.parameters() if not p.requires_grad}
    only = build(tiny_model_dir, SharingShape(freeze_embeddings=True))
    assert {n for n, p in only.named_parameters() if not p.requires_grad} == {
        n for n, _ in only.named_parameters() if n.startswith("encoder.embeddings.")}


@pytest.mark.parametrize("shape, ner_layer", [
    (SharingShape(private_layers=1, soft_l2=0.01), None),
    (SharingShape(), 1),
    (SharingShape(private_layers=1), 1),
    (SharingShape(freeze_layers=1), None),
])
def test_each_shape_saves_and_reloads_with_equal_predictions(tiny_model_dir, tiny_tokenizer, tmp_path, batch,
                                                             shape, ner_layer):
    model = build(tiny_model_dir, shape, ner_layer)
    with torch.no_grad():
        for parameter in model.sharing.private.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.save_pretrained(tmp_path, tokenizer=tiny_tokenizer, extra={"max_length": 64})
    loaded = MultiTaskModel.from_pretrained(tmp_path).eval()
    assert loaded.sharing.shape == model.sharing.shape
    assert loaded.head_configs == model.head_configs
    for task, logits in model.forward_all(**batch).items():
        torch.testing.assert_close(loaded.forward_all(**batch)[task], logits)
    texts = ["anna visited new york .", "the film is dull"]
    before = Predictor(model, tiny_tokenizer, mixed_precision="no").predict(texts)
    assert Predictor.from_pretrained(tmp_path, mixed_precision="no").predict(texts) == before


def test_automodel_of_a_checkpoint_with_private_layers_is_the_shared_stack_and_says_so(
        tiny_model_dir, tiny_tokenizer, tmp_path, batch):
    from transformers import AutoModel

    model = build(tiny_model_dir, SharingShape(private_layers=1))
    model.save_pretrained(tmp_path / "ckpt", tiny_tokenizer)
    encoder = AutoModel.from_pretrained(tmp_path / "ckpt").eval()
    assert encoder.config.num_hidden_layers == 1
    assert encoder.config.mtl_nlp_encoder == (
        "the 1 shared bottom layers of a 2-layer encoder: each task's top 1 layer(s) are in "
        "private_layers.safetensors; `mtl-nlp export DIR --task NAME` writes a task's whole model")
    with torch.no_grad():
        torch.testing.assert_close(encoder(**batch).last_hidden_state,
                                   model.encoder(**batch).last_hidden_state)
    reloaded = MultiTaskModel.from_pretrained(tmp_path / "ckpt").eval()  # the note does not get in the way
    for task, logits in model.forward_all(**batch).items():
        torch.testing.assert_close(reloaded.forward_all(**batch)[task], logits)


def test_predictor_runs_private_layers_only_for_the_tasks_asked(tiny_model_dir, tiny_tokenizer):
    model = build(tiny_model_dir, SharingShape(private_layers=1))
    calls = {task: 0 for task in model.sharing.private}
    for task, stack in model.sharing.private.items():
        stack.register_forward_hook(lambda *args, task=task: calls.__setitem__(task, calls[task] + 1))
    Predictor(model, tiny_tokenizer, mixed_precision="no").predict(["the film is dull"], tasks=["sentiment"])
    assert calls == {"ner": 0, "sentiment": 1}


def test_shapes_the_encoder_cannot_take(tiny_model_dir):
    with pytest.raises(SharingError, match="sharing.private_layers=3, but the encoder has 2 layers"):
        build(tiny_model_dir, SharingShape(private_layers=3))
    with pytest.raises(SharingError, match="task 'ner': layer 5, but the encoder has 2 layers"):
        build(tiny_model_dir, ner_layer=5)
    with pytest.raises(SharingError, match="freeze_layers=2 exceeds the 1 shared layers"):
        build(tiny_model_dir, SharingShape(private_layers=1, freeze_layers=2))
    with pytest.raises(SharingError, match="freeze_layers=100 exceeds the 2 shared layers"):
        build(tiny_model_dir, SharingShape(freeze_layers=100))  # hard sharing is checked too
    frozen = build(tiny_model_dir, SharingShape(freeze_layers=2))  # every layer: a linear probe
    trainable = {name.split(".")[0] for name, p in frozen.encoder.named_parameters() if p.requires_grad}
    assert trainable == {"pooler"}  # the pooler feeds the sentence heads and keeps learning
    albert = AlbertModel(AlbertConfig(vocab_size=50, embedding_size=16, hidden_size=16, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=32))
    with pytest.raises(SharingError, match="AlbertModel is built another way: use hard sharing"):
        LayerSharing(albert, SharingShape(private_layers=1), {"a": None})
    LayerSharing(albert, SharingShape(), {"a": None})  # hard sharing works with any encoder
