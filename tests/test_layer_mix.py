"""A head's learned mix of every encoder layer: the mix itself, one-hot weights equal a head on that
layer, the entry and head keys, the refusals, save and reload, and a run that trains the mix."""

from __future__ import annotations

import json

import pytest
import torch

from mtl_nlp.modeling.heads import HeadConfig
from mtl_nlp.modeling.layer_mix import ScalarMix
from mtl_nlp.modeling.model import MultiTaskModel
from mtl_nlp.modeling.sharing import SharingError, SharingShape
from mtl_nlp.publish.export import ExportError, export_task
from mtl_nlp.registry import TaskError, TaskSpec


def test_the_mix_is_the_scaled_softmax_weighted_sum_of_the_layers():
    mix = ScalarMix(3)
    states = torch.arange(3 * 2 * 4, dtype=torch.float32).reshape(3, 2, 4)
    # a new mix reads the top layer mostly: 0.9 of it, the rest shared evenly
    assert mix.layer_shares() == pytest.approx([0.05, 0.05, 0.9])
    assert torch.allclose(mix(states), 0.05 * states[0] + 0.05 * states[1] + 0.9 * states[2])
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([0.0, 1.0, 2.0]))
        mix.scale.fill_(2.0)
    shares = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), dim=0)
    expected = 2.0 * (shares[0] * states[0] + shares[1] * states[1] + shares[2] * states[2])
    assert torch.allclose(mix(states), expected)
    assert mix.layer_shares() == pytest.approx(shares.tolist())
    with pytest.raises(ValueError, match="a mix of 3 layers got 2 hidden states"):
        mix(states[:2])


@pytest.mark.parametrize("kind", ["classification", "token_classification"])
def test_one_hot_mix_weights_equal_a_head_on_that_layer(tiny_model_dir, tiny_tokenizer, kind):
    torch.manual_seed(0)
    mixed = HeadConfig(name="mixed", type=kind, labels=["a", "b", "c"], layer_mix=True, pooling="mean")
    on_layer = HeadConfig(name="on_layer", type=kind, labels=["a", "b", "c"], layer=1, pooling="mean")
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), [mixed, on_layer]).eval()
    with torch.no_grad():
        model.heads["mixed"].layer_mix.weights.copy_(torch.tensor([-1e4, 1e4, -1e4]))  # layer 1 alone
        for name, parameter in model.heads["on_layer"].named_parameters():
            parameter.copy_(dict(model.heads["mixed"].named_parameters())[name])
    texts = ["anna visited new york .", "the film is dull"]
    inputs = tiny_tokenizer(texts, padding=True, return_tensors="pt")
    inputs.pop("token_type_ids", None)
    logits = model.forward_all(**inputs)
    assert torch.allclose(logits["mixed"], logits["on_layer"], atol=1e-6)
    # one pass for every head, mixing or not
    calls = []
    handle = model.encoder.register_forward_hook(lambda *args: calls.append(1))
    model.forward_all(**inputs)
    handle.remove()
    assert len(calls) == 1


def test_layer_mix_is_a_head_key_an_entry_gives_its_heads():
    spec = TaskSpec.from_dict({"name": "atis", "format": "json", "data_files": {"train": "t.json"},
                               "layer_mix": True, "heads": [
                                   {"name": "intent", "type": "classification"},
                                   {"name": "slots", "type": "token_classification", "layer_mix": False}]})
    assert [(head.name, head.layer_mix) for head in spec.heads] == [("intent", True), ("slots", False)]
    with pytest.raises(TaskError, match="a head reads one `layer` or a `layer_mix` of them all, not both"):
        TaskSpec(name="t", type="classification", dataset="x", layer=2, layer_mix=True)
    with pytest.raises(TaskError, match="layer_mix must be true or false, got 'yes'"):
        TaskSpec(name="t", type="classification", dataset="x", layer_mix="yes")


def test_a_mix_with_private_layers_is_refused(tiny_model_dir):
    head = HeadConfig(name="mixed", type="classification", labels=["a", "b"], layer_mix=True)
    with pytest.raises(SharingError, match="a layer mix reads every layer of one shared encoder"):
        MultiTaskModel.from_encoder(str(tiny_model_dir), [head], SharingShape(private_layers=1))


def test_a_mixed_head_trains_saves_reloads_and_refuses_export(tiny_model_dir, tmp_path, capsys):
    from mtl_nlp.cli import main as cli_main
    from mtl_nlp.inference import Predictor

    out = tmp_path / "run"
    assert cli_main(["train", f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}",
                     "mixed_precision=no", "train.batch_size=8", "train.lr=1e-2", "train.max_steps=6",
                     "max_train_examples=40", "max_eval_examples=8", f"output_dir={out}",
                     "tasks=[{name: demo_topic, layer_mix: true}, demo_ner]"]) == 0
    saved = {task["name"]: task for task in json.loads((out / "mtl_nlp.json").read_text())["tasks"]}
    assert saved["demo_topic"]["layer_mix"] is True and saved["demo_ner"]["layer_mix"] is False
    model = MultiTaskModel.from_pretrained(out)
    assert not torch.equal(model.heads["demo_topic"].layer_mix.weights, ScalarMix(3).weights)  # it learned
    predictor = Predictor.from_pretrained(out)
    again = Predictor.from_pretrained(out)
    assert predictor.predict(["the team won the final ."]) == again.predict(["the team won the final ."])
    with pytest.raises(ExportError, match="reads a learned mix of every encoder layer"):
        export_task(out, "demo_topic", tmp_path / "exported")
    assert export_task(out, "demo_ner", tmp_path / "ner").is_dir()  # its other heads still export


def test_the_mix_weights_learn_at_their_own_rate_without_weight_decay(tiny_model_dir):
    from mtl_nlp.training.optim import MIX_LR, build_optimizer

    heads = [HeadConfig(name="mixed", type="classification", labels=["a", "b"], layer_mix=True)]
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), heads)
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.01, layer_lr_decay=0.9)
    mix = {id(p) for p in model.heads["mixed"].layer_mix.parameters()}
    groups = [group for group in optimizer.param_groups if mix & {id(p) for p in group["params"]}]
    assert len(groups) == 1 and {id(p) for p in groups[0]["params"]} == mix
    assert groups[0]["lr"] == MIX_LR and groups[0]["weight_decay"] == 0.0
