"""Per-task LoRA adapters (sharing.adapters): routing, what trains, the shared bottom, checkpoints,
resume and the refusals."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AlbertConfig, AlbertModel

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.cli import main as cli_main
from mtl_nlp.config import ConfigError, RawText, RunConfig, set_value, validate
from mtl_nlp.modeling.adapters import ADAPTERS_DIR, AdapterShape, is_adapter_parameter
from mtl_nlp.modeling.sharing import SharingError, SharingShape
from mtl_nlp.training.optim import build_optimizer

pytest.importorskip("peft")

HEADS = [
    HeadConfig(name="ner", type="token_classification", labels=["O", "B-PER", "I-PER"]),
    HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"]),
]


def build(model_dir, heads=HEADS, **adapters) -> MultiTaskModel:
    torch.manual_seed(0)
    shape = SharingShape(adapters=AdapterShape(**{"dropout": 0.0, **adapters}))
    model = MultiTaskModel.from_encoder(str(model_dir), heads, shape)
    with torch.no_grad():  # LoRA starts as a no-op (B = 0): give every adapter an effect
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    return model


@pytest.fixture
def batch(tiny_tokenizer):
    return tiny_tokenizer(["anna visited new york .", "the film is dull"], padding=True, return_tensors="pt")


def adapter_parameters(model: MultiTaskModel, name: str) -> dict[str, torch.Tensor]:
    return {key: p for key, p in model.named_parameters() if is_adapter_parameter(key) and f".{name}." in key}


def test_a_step_trains_the_batch_adapter_and_head_only(tiny_model_dir, batch):
    model = build(tiny_model_dir).train()
    model("sentiment", **batch, labels=torch.tensor([0, 1]))["loss"].backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    expected = {*adapter_parameters(model, "sentiment"), "heads.sentiment.classifier.weight",
                "heads.sentiment.classifier.bias"}
    assert with_grad == expected
    # every adapter stays trainable, so each is in the optimizer from the start
    assert all(p.requires_grad for p in adapter_parameters(model, "ner").values())
    base = [p for key, p in model.encoder.named_parameters() if not is_adapter_parameter(key)]
    assert not any(p.requires_grad for p in base)


def test_each_task_answers_through_its_own_adapter(tiny_model_dir, batch):
    model = build(tiny_model_dir).eval()
    together = model.forward_all(**batch)
    with torch.no_grad():
        for parameter in adapter_parameters(model, "ner").values():
            parameter.add_(0.3)
    after = model.forward_all(**batch)
    assert not torch.allclose(after["ner"], together["ner"])
    torch.testing.assert_close(after["sentiment"], together["sentiment"])


def test_adapters_on_the_top_layer_run_the_bottom_once(tiny_model_dir, batch):
    model = build(tiny_model_dir, layers=1).eval()
    bottom, top = model.encoder.encoder.layer
    calls = {"bottom": 0, "top": 0}
    bottom.register_forward_hook(lambda *args: calls.__setitem__("bottom", calls["bottom"] + 1))
    top.register_forward_hook(lambda *args: calls.__setitem__("top", calls["top"] + 1))
    together = model.forward_all(**batch)
    assert calls == {"bottom": 1, "top": 2}
    assert not any("lora" in name for name, _ in bottom.named_parameters())
    for task in ("ner", "sentiment"):  # the same as each task computed on its own
        torch.testing.assert_close(together[task], model.forward_all(**batch, tasks=[task])[task])


def test_an_entry_of_two_heads_shares_one_adapter(tiny_model_dir):
    heads = [HeadConfig(name="intent", type="classification", labels=["a", "b"], entry="atis"),
             HeadConfig(name="slots", type="token_classification", labels=["O", "B-X"], entry="atis"),
             HeadConfig(name="topic", type="classification", labels=["x", "y"])]
    model = build(tiny_model_dir, heads=heads)
    assert model.sharing.adapters.names == ["atis", "topic"]


def test_save_reload_answers_alike_and_keeps_peft_folders(tiny_model_dir, tiny_tokenizer, batch, tmp_path):
    model = build(tiny_model_dir, layers=1, r=4).eval()
    model.save_pretrained(tmp_path / "run", tokenizer=tiny_tokenizer)
    for task in ("ner", "sentiment"):
        folder = tmp_path / "run" / ADAPTERS_DIR / task
        config = json.loads((folder / "adapter_config.json").read_text())
        assert (config["peft_type"], config["r"], config["layers_to_transform"]) == ("LORA", 4, [1])
        assert (folder / "adapter_model.safetensors").is_file()
    manifest = json.loads((tmp_path / "run" / "mtl_nlp.json").read_text())["files"]
    assert f"{ADAPTERS_DIR}/ner/adapter_model.safetensors" in manifest
    from transformers import AutoModel  # the saved encoder is the plain base
    base = AutoModel.from_pretrained(tmp_path / "run")
    assert not any("lora" in name or "base_layer" in name for name in base.state_dict())
    reloaded = MultiTaskModel.from_pretrained(tmp_path / "run").eval()
    expected, answered = model.forward_all(**batch), reloaded.forward_all(**batch)
    for task in expected:
        torch.testing.assert_close(answered[task], expected[task])


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory, tiny_model_dir):
    """A short run (all_tasks steps) with rank-2 adapters in the top layer on a tagger and a pooler
    classifier."""
    out = tmp_path_factory.mktemp("adapter-run") / "run"
    assert cli_main(["train", f"model={tiny_model_dir}", f"cache_dir={out.parent / 'cache'}",
                     "mixed_precision=no", "train.batch_size=8", "train.lr=1e-2", "train.max_steps=6",
                     "train.step_mode=all_tasks", "max_train_examples=40", "max_eval_examples=8",
                     f"output_dir={out}", "tasks=[{name: demo_topic, pooling: pooler}, demo_ner]",
                     "sharing.adapters.method=lora", "sharing.adapters.r=2",
                     "sharing.adapters.layers=1"]) == 0
    return out


def test_a_run_trains_adapters_and_leaves_the_frozen_base_bit_for_bit(adapter_run, tiny_model_dir):
    card = (adapter_run / "README.md").read_text()
    assert "its own LoRA adapter (peft, rank 2) in the top 1 layers: the layers below them run once" in card
    pretrained = MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS).encoder.state_dict()
    trained = MultiTaskModel.from_pretrained(adapter_run)
    base = trained.sharing.adapters.base_state_dict()
    assert set(base) == set(pretrained)
    assert all(torch.equal(base[key], pretrained[key]) for key in pretrained)
    for task in ("demo_topic", "demo_ner"):  # all_tasks steps: every adapter learned
        learned = [p for key, p in adapter_parameters(trained, task).items() if "lora_B" in key]
        assert any(p.abs().sum() > 0 for p in learned)


def test_train_base_trains_the_shared_encoder_too(tiny_model_dir, batch):
    model = build(tiny_model_dir, train_base=True).train()
    model("ner", **batch, labels=torch.zeros_like(batch["input_ids"]))["loss"].backward()
    query = model.encoder.encoder.layer[0].attention.self.query.base_layer.weight
    assert query.requires_grad and query.grad is not None
    shared = {id(p) for p in model.shared_parameters()}  # the adapters are the tasks' own
    assert not shared & {id(p) for p in adapter_parameters(model, "ner").values()}
    assert id(query) in shared


def test_an_adapter_in_a_frozen_layer_still_trains(tiny_model_dir):
    shape = SharingShape(freeze_layers=2, adapters=AdapterShape(train_base=True))
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS, shape)
    assert all(p.requires_grad for p in adapter_parameters(model, "ner").values())
    assert not model.encoder.encoder.layer[1].attention.self.query.base_layer.weight.requires_grad


def test_adapters_learn_at_their_own_rate(tiny_model_dir):
    model = build(tiny_model_dir)
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.01, adapter_lr=5e-4)
    adapters = {id(p) for key, p in model.named_parameters() if is_adapter_parameter(key)}
    rates = {group["lr"] for group in optimizer.param_groups if adapters & {id(p) for p in group["params"]}}
    assert rates == {5e-4}
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(
        [p for p in model.parameters() if p.requires_grad])


def test_unknown_target_modules_and_deep_layers_are_refused(tiny_model_dir):
    with pytest.raises(SharingError, match="q_proj is not a linear module of BertModel; its linear "
                                           "modules: .*query.*value"):
        build(tiny_model_dir, target_modules=["q_proj"])
    with pytest.raises(SharingError, match="layers=3, but the encoder has 2 layers"):
        build(tiny_model_dir, layers=3)
    with pytest.raises(SharingError, match="private_layers gives each task layers of its own"):
        MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS,
                                    SharingShape(private_layers=1, adapters=AdapterShape()))


def test_albert_takes_adapters_on_every_layer_only(tmp_path):
    directory = tmp_path / "albert"
    AlbertModel(AlbertConfig(vocab_size=99, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=37)).save_pretrained(directory)
    model = MultiTaskModel.from_encoder(str(directory), HEADS, SharingShape(adapters=AdapterShape()))
    assert model.sharing.adapters.names == ["ner", "sentiment"]
    with pytest.raises(SharingError, match="one layer across its depth: use sharing.adapters.layers=all"):
        MultiTaskModel.from_encoder(str(directory), HEADS, SharingShape(adapters=AdapterShape(layers=1)))


@pytest.mark.parametrize(("key", "value", "message"), [
    ("sharing.adapters.r", "0", "rank of each LoRA update: at least 1, got 0"),
    ("sharing.adapters.dropout", "1", r"dropout must be in \[0, 1\)"),
    ("sharing.adapters.layers", "some", "`all` or a number k >= 1 of top layers, got 'some'"),
    ("sharing.private_layers", "1", "use one or the other"),
    ("sharing.adapters.method", "prefix", "sharing.adapters.method='prefix' is not one of: none, lora"),
    ("weighting.method", "pcgrad", "which adapters keep frozen: set sharing.adapters.train_base=true"),
])
def test_config_refusals(key, value, message):
    config = RunConfig()
    for name, text in [("sharing.adapters.method", "lora"), ("train.step_mode", "all_tasks"), (key, value)]:
        set_value(config, name, RawText(text), source="test")
    with pytest.raises(ConfigError, match=message):
        validate(config)


@pytest.mark.parametrize("task", ["demo_topic", "demo_ner"])
def test_export_writes_a_peft_adapter_and_a_merged_model_that_answer_as_the_predictor(
        adapter_run, tiny_model_dir, tiny_tokenizer, tmp_path, task):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    from mtl_nlp.publish.export import export_task

    model = MultiTaskModel.from_pretrained(adapter_run).eval()
    batch = tiny_tokenizer(["the team won the final .", "anna visited new york ."], padding=True,
                           return_tensors="pt")
    expected = model.forward_all(**batch, tasks=[task])[task]
    labels = model.head_configs[task].labels
    auto = AutoModelForTokenClassification if task == "demo_ner" else AutoModelForSequenceClassification
    folder = export_task(adapter_run, task, tmp_path / "adapter")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)  # the frozen base is the pretrained one
    assert "classifier" in config["modules_to_save"]
    base = auto.from_pretrained(config["base_model_name_or_path"], num_labels=len(labels))
    with torch.no_grad():
        answered = PeftModel.from_pretrained(base, folder).eval()(**batch).logits
    torch.testing.assert_close(answered, expected)
    merged = export_task(adapter_run, task, tmp_path / "merged", merge=True)
    assert not (merged / "adapter_config.json").exists()
    with torch.no_grad():
        torch.testing.assert_close(auto.from_pretrained(merged).eval()(**batch).logits, expected)
    assert "PeftModel.from_pretrained" in (folder / "README.md").read_text()


def test_merge_without_adapters_is_refused(tiny_model_dir, tiny_tokenizer, tmp_path):
    from mtl_nlp.publish.export import ExportError, export_task

    plain = MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS)
    plain.save_pretrained(tmp_path / "plain", tiny_tokenizer)
    with pytest.raises(ExportError, match="has no adapters .* to merge: export it without --merge"):
        export_task(tmp_path / "plain", "ner", tmp_path / "out", merge=True)


def test_finetune_adapters_assembles_one_encoder_and_an_adapter_per_task(
        tiny_model_dir, tiny_tokenizer, tmp_path):
    from mtl_nlp.workflows.finetune import finetune_tasks

    out = tmp_path / "multi"
    common = [f"model={tiny_model_dir}", f"cache_dir={tmp_path / 'cache'}", "mixed_precision=no",
              "train.batch_size=8", "max_train_examples=40", "max_eval_examples=8"]
    assert cli_main(["train", *common, "train.lr=1e-2", "train.max_steps=4", f"output_dir={out}",
                     "tasks=[demo_topic, demo_ner]"]) == 0
    summary = finetune_tasks(out, overrides=["train.max_steps=4", "sharing.adapters.lr=5e-2"], adapters=True)
    assembled = out / "finetuned" / "adapters"
    assert summary["adapters"] == str(assembled) and summary["encoder_passes"]["adapters"] == 2
    files = json.loads((assembled / "mtl_nlp.json").read_text())["files"]
    assert sorted(name for name in files if name.endswith(".safetensors")) == [
        "adapters/demo_ner/adapter_model.safetensors", "adapters/demo_topic/adapter_model.safetensors",
        "heads.safetensors", "model.safetensors"]  # one encoder, an adapter per task
    multi = MultiTaskModel.from_pretrained(out)
    model = MultiTaskModel.from_pretrained(assembled).eval()
    base = model.sharing.adapters.base_state_dict()
    assert all(torch.equal(base[key], tensor) for key, tensor in multi.encoder.state_dict().items())
    batch = tiny_tokenizer(["the team won the final .", "anna visited new york ."], padding=True,
                           return_tensors="pt")
    answers = model.forward_all(**batch)
    for task in ("demo_topic", "demo_ner"):  # each task answers as its own adapter run does
        run = MultiTaskModel.from_pretrained(out / "finetuned" / task).eval()
        torch.testing.assert_close(answers[task], run.forward_all(**batch)[task])
    with pytest.raises(ConfigError, match="finetune sets sharing.adapters.train_base itself"):
        finetune_tasks(out, overrides=["sharing.adapters.train_base=true"], adapters=True, overwrite=True)
