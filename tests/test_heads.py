"""Regression and multilabel heads: their losses, decoding, checkpoint fields, training and
evaluation with the tiny encoder."""

import json
import math

import pytest
import torch
from accelerate import Accelerator

from mtl_nlp import HeadConfig, MultiTaskModel, TaskSpec
from mtl_nlp.data.pipeline import prepare_task_data
from mtl_nlp.modeling.heads import MultiLabelHead, RegressionHead, build_head
from mtl_nlp.training.evaluation import build_eval_loaders, evaluate
from mtl_nlp.training.metrics import multilabel_metrics, regression_metrics
from mtl_nlp.training.optim import build_optimizer
from mtl_nlp.training.setup import head_config

ASPECTS = ["acting", "cast", "script"]
HEADS = [
    HeadConfig(name="sim", type="regression", text_pair=True),
    HeadConfig(name="aspects", type="multilabel", labels=ASPECTS, threshold=0.7, pooling="cls"),
]


@pytest.fixture
def model(tiny_model_dir):
    torch.manual_seed(0)
    return MultiTaskModel.from_encoder(str(tiny_model_dir), HEADS).eval()


def test_build_head_label_rules():
    assert isinstance(build_head(8, HeadConfig(name="r", type="regression")), RegressionHead)
    with pytest.raises(ValueError, match="head 'r': a regression head takes no labels"):
        build_head(8, HeadConfig(name="r", type="regression", labels=["a"]))
    with pytest.raises(ValueError, match="head 'm' has no labels"):
        build_head(8, HeadConfig(name="m", type="multilabel"))


def test_losses_by_hand_in_float32():
    regression = build_head(8, HeadConfig(name="r", type="regression"))
    loss = regression.loss(torch.tensor([1.0, 2.0], dtype=torch.bfloat16), torch.tensor([0.0, 0.0]))
    assert loss.dtype == torch.float32 and loss.item() == 2.5  # (1 + 4) / 2
    multilabel = build_head(8, HeadConfig(name="m", type="multilabel", labels=ASPECTS))
    loss = multilabel.loss(torch.zeros(2, 3, dtype=torch.bfloat16), torch.tensor([[1.0, 0, 1], [0, 0, 0]]))
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(math.log(2), abs=1e-7)
    loss = multilabel.loss(torch.tensor([[2.0, -2.0, 0.0]]), torch.tensor([[1.0, 1.0, 0.0]]))
    # -log(sigmoid(2)), -log(sigmoid(-2)), -log(1 - sigmoid(0)), averaged
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(2)) + math.log(2)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_multilabel_decoding_uses_the_threshold():
    head = MultiLabelHead(8, HeadConfig(name="m", type="multilabel", labels=ASPECTS, threshold=0.7))
    logits = torch.logit(torch.tensor([[0.69, 0.7, 0.95], [0.1, 0.5, 0.71]]))
    assert head.decode(logits).tolist() == [[0, 1, 1], [0, 0, 1]]


def test_forward_shapes_and_losses(model, pair_tokenizer):
    batch = pair_tokenizer(["the film", "the cast is dull"], ["the story", "the film"], padding=True,
                           return_tensors="pt")
    out = model(task="sim", **batch, labels=torch.tensor([4.5, 1.0]))
    assert out["logits"].shape == (2,) and out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out = model(task="aspects", **batch, labels=torch.tensor([[1.0, 0, 0], [0, 1, 1]]))
    assert out["logits"].shape == (2, 3) and torch.isfinite(out["loss"])


def test_head_config_of_a_task_records_what_loading_needs():
    spec = TaskSpec(name="nli", type="multilabel", dataset="x", text_pair_column="b", threshold=0.3,
                    pooling="cls")
    assert head_config(spec, ["a", "b"]) == HeadConfig(
        name="nli", type="multilabel", labels=["a", "b"], pooling="cls", threshold=0.3, text_pair=True
    )


def test_checkpoint_keeps_the_new_fields_and_old_checkpoints_load(model, tiny_tokenizer, tmp_path):
    model.save_pretrained(tmp_path, tokenizer=tiny_tokenizer)
    saved = json.loads((tmp_path / "mtl_nlp.json").read_text())
    assert saved["tasks"][0]["text_pair"] is True and saved["tasks"][1]["threshold"] == 0.7
    assert MultiTaskModel.from_pretrained(tmp_path).head_configs == model.head_configs
    # A checkpoint written before these fields existed: classification heads only.
    old = MultiTaskModel.from_encoder(str(tmp_path), [HeadConfig(name="s", type="classification",
                                                                 labels=["neg", "pos"])])
    old.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "mtl_nlp.json").read_text())
    for task in config["tasks"]:
        del task["threshold"], task["text_pair"]
    (tmp_path / "old" / "mtl_nlp.json").write_text(json.dumps(config))
    loaded = MultiTaskModel.from_pretrained(tmp_path / "old").head_configs["s"]
    assert (loaded.threshold, loaded.text_pair) == (0.5, False)


def test_regression_and_multilabel_losses_decrease_on_a_fixed_batch(tiny_model_dir, pair_tokenizer):
    torch.manual_seed(0)
    heads = [HeadConfig(name="sim", type="regression", text_pair=True),
             HeadConfig(name="aspects", type="multilabel", labels=ASPECTS)]
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), heads).eval()  # no dropout noise
    batch = pair_tokenizer(["the film is wonderful", "the film is dull", "a brilliant story"],
                           ["the story", "the cast", "the film"], padding=True, return_tensors="pt")
    targets = {"sim": torch.tensor([4.0, 1.0, 2.5]),
               "aspects": torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0]])}
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.0)
    losses = {task: [] for task in targets}
    for _ in range(60):
        for task, labels in targets.items():
            loss = model(task=task, **batch, labels=labels)["loss"]
            losses[task].append(loss.item())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    assert all(math.isfinite(v) for values in losses.values() for v in values)
    assert losses["sim"][-1] < 0.1 * losses["sim"][0]
    assert losses["aspects"][-1] < 0.6 * losses["aspects"][0]


def test_evaluate_scores_regression_and_multilabel_tasks(tiny_model_dir, pair_tokenizer, tmp_path):
    (tmp_path / "sim.tsv").write_text(
        "a\tb\tscore\nthe film\tthe story\t4.5\nthe cast\tthe film\t1\nthe story is dull\tthe film\t2\n"
    )
    (tmp_path / "aspects.tsv").write_text(
        "text\tlabel\nthe acting\tacting\nthe cast and the script\tcast,script\nthe film\t\n"
    )
    specs = [
        TaskSpec(name="sim", type="regression", format="tsv", text_column="a", text_pair_column="b",
                 label_column="score", data_files={"train": str(tmp_path / "sim.tsv"),
                                                   "validation": str(tmp_path / "sim.tsv")}),
        TaskSpec(name="aspects", type="multilabel", format="tsv", threshold=0.7, data_files={
            "train": str(tmp_path / "aspects.tsv"), "validation": str(tmp_path / "aspects.tsv")}),
    ]
    tasks = prepare_task_data(specs, pair_tokenizer, 32, cache_dir=str(tmp_path / "cache"))
    torch.manual_seed(0)
    heads = [head_config(data.spec, data.labels) for data in tasks.values()]
    model = MultiTaskModel.from_encoder(str(tiny_model_dir), heads)
    accelerator = Accelerator(cpu=True)
    loaders = build_eval_loaders(tasks, "validation", pair_tokenizer, 2, accelerator)
    scores = evaluate(accelerator, model, loaders, tasks)
    # The same figures from a plain forward over one example at a time.
    model.eval()
    values = [one_by_one(model, "sim", row).item() for row in tasks["sim"].splits["validation"]]
    decoded = [model.heads["aspects"].decode(one_by_one(model, "aspects", row))[0].tolist()
               for row in tasks["aspects"].splits["validation"]]
    # (padded batches and single rows differ in the last float digits; Pearson on 3 values
    # magnifies that to about 1e-5)
    assert scores["sim"] == pytest.approx(regression_metrics([4.5, 1.0, 2.0], values), abs=1e-4)
    assert scores["aspects"] == multilabel_metrics([[1, 0, 0], [0, 1, 1], [0, 0, 0]], decoded)
    assert set(scores["aspects"]) == {"micro_f1", "macro_f1"}


@torch.no_grad()
def one_by_one(model, task, row):
    inputs = {key: torch.tensor([row[key]]) for key in ("input_ids", "attention_mask", "token_type_ids")}
    return model(task=task, **inputs)["logits"]


def test_token_loss_is_the_mean_over_scored_positions_and_zero_without_any():
    head = build_head(4, HeadConfig(name="ner", type="token_classification", labels=["O", "B-X", "I-X"]))
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]]])
    labels = torch.tensor([[0, 1, -100]])
    expected = (-torch.log_softmax(logits[0, 0], -1)[0] - torch.log_softmax(logits[0, 1], -1)[1]) / 2
    assert float(head.loss(logits, labels)) == pytest.approx(float(expected))
    # A batch whose words all tokenized to nothing has no scored position: 0, not NaN.
    nothing = head.loss(logits, torch.full((1, 3), -100))
    assert float(nothing) == 0.0
