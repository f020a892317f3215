"""export_task: each task of a checkpoint as a standard transformers model whose pipeline answers
exactly as the Predictor does on the multi-task checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from encoder_families import tiny_encoder
from huggingface_hub import ModelCard
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertModel,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizerFast,
    pipeline,
)

from mtl_nlp import HeadConfig, MultiTaskModel, Predictor
from mtl_nlp.modeling.sharing import SharingShape
from mtl_nlp.publish.export import ExportError, export_task

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TEXTS = ["anna schmidt lives in new york .", "acme corp opened in berlin today",
         "the film was great", "peter went to paris"]
PAIRS = [("the film was great", "the film was bad"), ("anna lives in berlin", "anna lives in paris")]
TOLERANCE = 1e-4


def heads(ner_layer: int | None = None) -> list[HeadConfig]:
    return [
        HeadConfig(name="ner", type="token_classification", labels=TAGS, layer=ner_layer),
        HeadConfig(name="sentiment", type="classification", labels=["negative", "positive"],
                   pooling="pooler"),
        HeadConfig(name="similarity", type="regression", pooling="pooler", text_pair=True),
        HeadConfig(name="aspects", type="multilabel", labels=["food", "price", "service"],
                   pooling="pooler", threshold=0.5),
    ]


def sharpen(model: MultiTaskModel) -> MultiTaskModel:
    """Random heads give near-uniform scores; larger weights make the decisions differ by input."""
    torch.manual_seed(1)
    with torch.no_grad():
        for head in model.heads.values():
            head.classifier.weight.normal_(0, 2.0)
    return model


def save_checkpoint(directory, model: MultiTaskModel, tokenizer) -> None:
    model.save_pretrained(directory, tokenizer=tokenizer, extra={"max_length": 64})


@pytest.fixture(scope="module")
def bert_checkpoint(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    directory = tmp_path_factory.mktemp("bert-checkpoint")
    model = sharpen(MultiTaskModel(BertModel.from_pretrained(tiny_model_dir), heads()))
    save_checkpoint(directory, model, tiny_tokenizer)
    return directory


def predictor(checkpoint) -> Predictor:
    return Predictor.from_pretrained(checkpoint, device="cpu", mixed_precision="no")


def assert_same_answers(checkpoint, task: str, exported) -> None:
    """pipeline(export) and the Predictor on the checkpoint agree on every test input."""
    ours = predictor(checkpoint)
    head = ours.model.head_configs[task]
    if head.type == "token_classification":
        tagger = pipeline("token-classification", model=str(exported), aggregation_strategy="first")
        theirs = tagger(TEXTS)
        mine = [result[task] for result in ours.predict(TEXTS, tasks=[task])]
        assert any(mine), "the sharpened model finds some entity"
        for text_entities, pipeline_entities in zip(mine, theirs):
            assert [(e["label"], e["start"], e["end"]) for e in text_entities] == [
                (e["entity_group"], e["start"], e["end"]) for e in pipeline_entities
            ]
            for entity, other in zip(text_entities, pipeline_entities):
                assert entity["score"] == pytest.approx(float(other["score"]), abs=TOLERANCE)
        return
    inputs = PAIRS if head.text_pair else TEXTS
    pipeline_inputs = [{"text": a, "text_pair": b} for a, b in PAIRS] if head.text_pair else TEXTS
    mine = [result[task] for result in ours.predict(inputs, tasks=[task])]
    if head.type == "regression":
        classifier = pipeline("text-classification", model=str(exported), function_to_apply="none")
        theirs = classifier(pipeline_inputs)
        for answer, other in zip(mine, theirs):
            assert answer["value"] == pytest.approx(other["score"], abs=TOLERANCE)
    elif head.type == "multilabel":
        classifier = pipeline("text-classification", model=str(exported), top_k=None)
        for answer, other in zip(mine, classifier(pipeline_inputs)):
            scores = {item["label"]: item["score"] for item in other}
            assert answer["scores"] == pytest.approx(scores, abs=TOLERANCE)
    else:
        classifier = pipeline("text-classification", model=str(exported))
        for answer, other in zip(mine, classifier(pipeline_inputs)):
            assert answer["label"] == other["label"]
            assert answer["score"] == pytest.approx(other["score"], abs=TOLERANCE)


@pytest.mark.parametrize("task", ["ner", "sentiment", "similarity", "aspects"])
def test_bert_export_answers_like_the_predictor(bert_checkpoint, tmp_path, task):
    exported = export_task(bert_checkpoint, task, tmp_path / task)
    assert_same_answers(bert_checkpoint, task, exported)


def test_export_holds_a_standard_model_with_labels_and_a_card(bert_checkpoint, tmp_path):
    export_task(bert_checkpoint, "ner", tmp_path / "ner")
    export_task(bert_checkpoint, "aspects", tmp_path / "aspects")
    ner = AutoModelForTokenClassification.from_pretrained(tmp_path / "ner")
    assert ner.config.id2label == dict(enumerate(TAGS))
    assert ner.config.architectures == ["BertForTokenClassification"]
    aspects = AutoModelForSequenceClassification.from_pretrained(tmp_path / "aspects")
    assert aspects.config.problem_type == "multi_label_classification"
    assert aspects.config.label2id == {"food": 0, "price": 1, "service": 2}
    assert not (tmp_path / "ner" / "mtl_nlp.json").exists()  # a plain transformers folder
    card = ModelCard.load(tmp_path / "ner" / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "token-classification"
    assert 'aggregation_strategy="first"' in card.text
    assert "`B-PER`" in card.text


def test_export_refuses_a_mean_pooled_head_naming_the_option(tmp_path, tiny_model_dir, tiny_tokenizer):
    config = HeadConfig(name="topic", type="classification", labels=["a", "b"], pooling="mean")
    save_checkpoint(tmp_path / "ckpt", MultiTaskModel(BertModel.from_pretrained(tiny_model_dir), [config]),
                    tiny_tokenizer)
    with pytest.raises(ExportError, match="pooling 'mean'.*`pooling: pooler`"):
        export_task(tmp_path / "ckpt", "topic", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_export_names_the_tasks_when_the_task_is_unknown(bert_checkpoint, tmp_path):
    with pytest.raises(ExportError, match="no task 'nre'; its tasks: ner, sentiment, similarity, aspects"):
        export_task(bert_checkpoint, "nre", tmp_path / "out")


FAMILY_CLASSIFIERS = {  # the family's sequence classifier: its class and activation after the dense layer
    "distilbert": ("DistilBertForSequenceClassification", "relu"),
    "albert": ("AlbertForSequenceClassification", "tanh"),
    "electra": ("ElectraForSequenceClassification", "gelu"),
    "deberta-v2": ("DebertaV2ForSequenceClassification", "gelu"),
    "mpnet": ("MPNetForSequenceClassification", "tanh"),
    "xlm-roberta": ("XLMRobertaForSequenceClassification", "tanh"),
    "modernbert": ("ModernBertForSequenceClassification", "gelu"),  # + norm, in its prediction head
}


@pytest.mark.parametrize("family", list(FAMILY_CLASSIFIERS))
def test_every_head_of_every_family_exports_and_answers_like_the_predictor(tmp_path, tiny_tokenizer, family):
    model = sharpen(MultiTaskModel(tiny_encoder(family, len(tiny_tokenizer)), heads()))
    classifier, activation = FAMILY_CLASSIFIERS[family]
    assert {config.pooler_activation for config in model.head_configs.values()
            if config.pooling == "pooler"} == {activation}
    save_checkpoint(tmp_path / "ckpt", model, tiny_tokenizer)
    for task in ("ner", "sentiment", "similarity", "aspects"):
        exported = export_task(tmp_path / "ckpt", task, tmp_path / task)
        architecture = json.loads((exported / "config.json").read_text())["architectures"][0]
        assert architecture == (classifier if task != "ner" else classifier.replace("Sequence", "Token"))
        assert_same_answers(tmp_path / "ckpt", task, exported)


def test_a_pooler_head_with_another_activation_is_not_exported_as_the_family(tmp_path, tiny_tokenizer):
    model = MultiTaskModel(tiny_encoder("electra", len(tiny_tokenizer)), heads()[1:2])
    model.head_configs["sentiment"].pooler_activation = "tanh"  # as saved before heads followed families
    save_checkpoint(tmp_path / "ckpt", model, tiny_tokenizer)
    with pytest.raises(ExportError, match="applies tanh, where electra's sequence classifier applies gelu"):
        export_task(tmp_path / "ckpt", "sentiment", tmp_path / "out")


def test_export_refuses_a_token_classifier_with_layers_the_head_lacks(tmp_path, tiny_tokenizer):
    encoder = tiny_encoder("modernbert", len(tiny_tokenizer))
    plain = MultiTaskModel(encoder, heads()[:1], pretrained=False)  # as saved before heads had the family's
    assert plain.heads["ner"].head is None
    save_checkpoint(tmp_path / "ckpt", plain, tiny_tokenizer)
    with pytest.raises(ExportError, match=r"ModernBertForTokenClassification puts layers between the encoder "
                                          r"and its classifier \(head\.dense\.weight"):
        export_task(tmp_path / "ckpt", "ner", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_head_without_the_family_prediction_head_is_not_a_start_for_one_with_it(tmp_path, tiny_tokenizer):
    plain = MultiTaskModel(tiny_encoder("modernbert", len(tiny_tokenizer)), heads()[:2], pretrained=False)
    save_checkpoint(tmp_path / "ckpt", plain, tiny_tokenizer)
    model = MultiTaskModel(tiny_encoder("modernbert", len(tiny_tokenizer)), heads()[:2])
    assert all(config.prediction_head for config in model.head_configs.values())
    assert model.start_from_checkpoint(tmp_path / "ckpt") == []  # other layers: fresh heads


def test_sharing_shapes_export_the_layers_the_task_reads(tmp_path, tiny_model_dir, tiny_tokenizer):
    # 2 layers: the top one private per task; NER reads shared layer 1, the others their own top.
    model = MultiTaskModel(BertModel.from_pretrained(tiny_model_dir), heads(ner_layer=1),
                           SharingShape(private_layers=1))
    sharpen(model)
    with torch.no_grad():  # private copies that differ from each other, as after training
        for copy in model.sharing.private.values():
            for parameter in copy.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
    save_checkpoint(tmp_path / "ckpt", model, tiny_tokenizer)
    for task in ("ner", "sentiment", "aspects"):
        exported = export_task(tmp_path / "ckpt", task, tmp_path / task)
        config = json.loads((exported / "config.json").read_text())
        assert config["num_hidden_layers"] == (1 if task == "ner" else 2)
        assert "mtl_nlp_encoder" not in config  # the checkpoint's shared-layers note is not the export's
        assert_same_answers(tmp_path / "ckpt", task, exported)


@pytest.fixture(scope="module")
def roberta_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("roberta-checkpoint")
    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator([" ".join(TEXTS)] * 10, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    tokenizer = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                     sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                     pad_token="<pad>", mask_token="<mask>", add_prefix_space=True)
    torch.manual_seed(0)
    encoder = RobertaModel(RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id,
    ))
    model = sharpen(MultiTaskModel(encoder, heads()[:2]))
    save_checkpoint(directory, model, tokenizer)
    return directory


@pytest.mark.parametrize("task", ["ner", "sentiment"])
def test_roberta_export_answers_like_the_predictor(roberta_checkpoint, tmp_path, task):
    exported = export_task(roberta_checkpoint, task, tmp_path / task)
    assert_same_answers(roberta_checkpoint, task, exported)
