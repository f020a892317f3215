"""Task heads on top of the shared encoder's hidden states.

Each head owns its loss (`loss`), its evaluation decoding (`decode`: what the metrics compare
with the gold labels) and its prediction scores (`scores`: what the Predictor reports).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PretrainedConfig
from transformers.activations import ACT2FN

from mtl_nlp.common.task_types import LABEL_FREE_TYPES, POOLINGS
from mtl_nlp.common.tokenizing import IGNORE_INDEX
from mtl_nlp.modeling.layer_mix import ScalarMix

# The activation after the dense layer of each family's sequence classifier (first token ->
# dense -> activation -> classifier), by config.model_type; tanh for the others (BERT, ALBERT,
# RoBERTa, XLM-R, MPNet). A `pooler` head computes its family's, so that it exports to the
# family's own AutoModelForSequenceClassification.
FAMILY_POOLER_ACTIVATIONS = {"distilbert": "relu", "electra": "gelu", "deberta-v2": "gelu"}
# Families whose classifiers (sequence and token alike) put a prediction head, dense ->
# activation -> norm, between the encoder and the output layer; a head of such an encoder is built
# from transformers' own module (see family_prediction_head), so its export cannot drift.
PREDICTION_HEAD_FAMILIES = ("modernbert",)
EncoderConfig = PretrainedConfig | None  # what a family prediction head is built from


def family_pooler_activation(encoder_config: PretrainedConfig) -> str:
    """The activation of the encoder family's sequence classifier (DeBERTa's and ModernBERT's
    from their config)."""
    if encoder_config.model_type == "deberta-v2":
        return getattr(encoder_config, "pooler_hidden_act", "gelu")
    if encoder_config.model_type == "modernbert":
        return encoder_config.classifier_activation
    return FAMILY_POOLER_ACTIVATIONS.get(encoder_config.model_type, "tanh")


def family_head_config(config: HeadConfig, encoder_config: PretrainedConfig) -> HeadConfig:
    """`config` for a new head on this encoder: a `pooler` head takes the family's activation,
    and a pooler or tagging head of a PREDICTION_HEAD_FAMILIES encoder its prediction head."""
    changes: dict[str, Any] = {}
    per_token = config.type in ("token_classification", "extractive_qa")
    if config.pooling == "pooler" and not per_token:
        changes["pooler_activation"] = family_pooler_activation(encoder_config)
    reads_through_head = per_token or config.pooling == "pooler"
    if encoder_config.model_type in PREDICTION_HEAD_FAMILIES and reads_through_head:
        changes["prediction_head"] = True
    return dataclasses.replace(config, **changes) if changes else config


def family_prediction_head(encoder_config: PretrainedConfig) -> nn.Module:
    """The family's own prediction head module (ModernBERT's dense -> activation -> norm)."""
    if encoder_config.model_type != "modernbert":
        raise ValueError(f"{encoder_config.model_type} classifiers have no prediction head; "
                         f"these do: {', '.join(PREDICTION_HEAD_FAMILIES)}")
    from transformers.models.modernbert.modeling_modernbert import ModernBertPredictionHead

    return ModernBertPredictionHead(encoder_config)


@dataclass
class HeadConfig:
    """What a checkpoint records about one task head; enough to rebuild it and decode its output.

    Fields added after the first checkpoints have defaults, so older checkpoints still load.
    """

    name: str
    type: str  # classification | token_classification | regression | multilabel
    labels: list[str] = field(default_factory=list)  # empty for regression
    dropout: float = 0.1
    # sentence heads: mean of token states, the first token's state, or "pooler": the first
    # token through dense + tanh, as BERT's pooler and transformers' sequence classifiers do
    pooling: str = "mean"
    threshold: float = 0.5  # multilabel: a label is predicted when its probability reaches this
    text_pair: bool = False  # the task reads (text, text_pair) pairs
    layer: int | None = None  # the encoder layer whose hidden states the head reads (None: the last)
    entry: str | None = None  # the task entry whose batches train this head with its siblings
    loss_weight: float = 1.0  # multiplies the head's loss in its entry's sum (entry heads only)
    # pooling "pooler": the activation after the dense layer (transformers' ACT2FN name), the
    # encoder family's (family_pooler_activation); checkpoints saved before it was recorded used tanh
    pooler_activation: str = "tanh"
    # the encoder family's prediction head (dense -> activation -> norm, PREDICTION_HEAD_FAMILIES)
    # as the pooler of a `pooler` head and before a tagging head's classifier
    prediction_head: bool = False
    # the head reads a learned mix of every encoder layer (modeling/layer_mix.py), not one layer
    layer_mix: bool = False
    no_answer: bool = False  # extractive_qa: the empty answer is an answer (common/answer_spans.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pool(hidden: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    """One vector per sequence: the first token's state, or the mean over real tokens."""
    if pooling in ("cls", "pooler"):
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class PooledHead(nn.Module):
    """Pooled sentence representation -> dropout -> linear with `outputs` units.

    With pooling "pooler" the first token's state goes through the head's own dense layer and
    the activation of the encoder family's sequence classifier first (tanh for BERT and RoBERTa,
    GELU for ELECTRA and DeBERTa, ReLU for DistilBERT): the computation of transformers' own
    sequence classifiers, so such a head exports to a standard model (see mtl_nlp.publish.export).
    """

    def __init__(self, hidden_size: int, config: HeadConfig, outputs: int,
                 encoder_config: EncoderConfig = None) -> None:
        super().__init__()
        if config.pooling not in POOLINGS:
            raise ValueError(f"head {config.name!r}: pooling {config.pooling!r} not in {POOLINGS}")
        self.pooling = config.pooling
        self.pooler, self.activation = None, None
        if config.pooling == "pooler" and config.prediction_head:  # its activation is inside
            self.pooler = family_prediction_head(_needed(encoder_config, config))
        elif config.pooling == "pooler":
            self.pooler = nn.Linear(hidden_size, hidden_size)
            self.activation = ACT2FN[config.pooler_activation]
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(hidden_size, outputs)
        self.layer_mix = layer_mix_of(config, encoder_config)

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        if self.layer_mix is not None:  # hidden: every layer's states, stacked
            hidden = self.layer_mix(hidden)
        pooled = pool(hidden, attention_mask, self.pooling)
        if self.pooler is not None:
            pooled = self.pooler(pooled)
        if self.activation is not None:
            pooled = self.activation(pooled)
        return self.classifier(self.dropout(pooled))

    def init_pooler_from(self, encoder: nn.Module) -> bool:
        """Start the head's pooler from the encoder's pretrained one (BERT and ALBERT have one,
        MPNet too), as transformers' BERT sequence classifiers do; True when it did. A fresh
        layer otherwise, initialised as the encoder initialises its own layers."""
        if self.pooler is None:
            return False
        pretrained = getattr(encoder, "pooler", None)
        pretrained = getattr(pretrained, "dense", pretrained)  # ALBERT's pooler is the Linear itself
        if isinstance(pretrained, nn.Linear) and pretrained.weight.shape == self.pooler.weight.shape:
            self.pooler.load_state_dict(pretrained.state_dict())
            return True
        return False


class SequenceClassificationHead(PooledHead):
    """One label per text: logits [batch, labels], cross-entropy, argmax."""

    def __init__(self, hidden_size: int, config: HeadConfig, encoder_config: EncoderConfig = None) -> None:
        super().__init__(hidden_size, config, len(config.labels), encoder_config)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy in float32 (logits may be bf16 under autocast)."""
        return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)

    def decode(self, logits: Tensor) -> Tensor:
        """Label ids [batch]."""
        return logits.argmax(dim=-1)

    def scores(self, logits: Tensor) -> Tensor:
        """Label probabilities [batch, labels]."""
        return logits_to_probabilities(logits)


class TokenClassificationHead(nn.Module):
    """Per-token hidden state -> (the family's prediction head) -> dropout -> linear;
    cross-entropy over scored positions."""

    def __init__(self, hidden_size: int, config: HeadConfig, encoder_config: EncoderConfig = None) -> None:
        super().__init__()
        self.head = None
        if config.prediction_head:
            self.head = family_prediction_head(_needed(encoder_config, config))
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(hidden_size, len(config.labels))
        self.layer_mix = layer_mix_of(config, encoder_config)

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        if self.layer_mix is not None:  # hidden: every layer's states, stacked
            hidden = self.layer_mix(hidden)
        if self.head is not None:
            hidden = self.head(hidden)
        return self.classifier(self.dropout(hidden))

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy in float32, averaged over positions whose label is not IGNORE_INDEX; 0
        for a batch with none (sentences whose words all tokenize to nothing), where the mean
        would be NaN."""
        summed = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
            ignore_index=IGNORE_INDEX, reduction="sum",
        )
        return summed / (labels != IGNORE_INDEX).sum().clamp(min=1)

    def decode(self, logits: Tensor) -> Tensor:
        """Tag ids [batch, length]."""
        return logits.argmax(dim=-1)

    def scores(self, logits: Tensor) -> Tensor:
        """Tag probabilities [batch, length, labels]."""
        return logits_to_probabilities(logits)


class RegressionHead(PooledHead):
    """One float per text: output [batch], mean squared error."""

    def __init__(self, hidden_size: int, config: HeadConfig, encoder_config: EncoderConfig = None) -> None:
        super().__init__(hidden_size, config, 1, encoder_config)

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        return super().forward(hidden, attention_mask).squeeze(-1)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """MSE in float32, so bf16 outputs do not round the squared errors."""
        return F.mse_loss(logits.float(), labels.float())

    def decode(self, logits: Tensor) -> Tensor:
        """The predicted values [batch], float32."""
        return logits.float()

    def scores(self, logits: Tensor) -> Tensor:
        """The predicted values [batch], float32."""
        return logits.float()


class MultiLabelHead(PooledHead):
    """Zero or more labels per text: logits [batch, labels], sigmoid + binary cross-entropy;
    a label is predicted when its probability reaches the task's threshold."""

    def __init__(self, hidden_size: int, config: HeadConfig, encoder_config: EncoderConfig = None) -> None:
        super().__init__(hidden_size, config, len(config.labels), encoder_config)
        self.threshold = config.threshold

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Binary cross-entropy with logits in float32 against multi-hot targets."""
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())

    def decode(self, logits: Tensor) -> Tensor:
        """0/1 label indicators [batch, labels]."""
        return (self.scores(logits) >= self.threshold).long()

    def scores(self, logits: Tensor) -> Tensor:
        """Per-label probabilities [batch, labels], float32."""
        return torch.sigmoid(logits.float())


class MultipleChoiceHead(SequenceClassificationHead):
    """One score per (question, option) row, the pooled head with one output (transformers'
    *ForMultipleChoice computation); an example's options are rows of the batch, and
    `option_scores` arranges them [batch, options], which the classification head's loss,
    decoding and probabilities then read as an example's labels (an absent option gets 0)."""

    def __init__(self, hidden_size: int, config: HeadConfig, encoder_config: EncoderConfig = None) -> None:
        PooledHead.__init__(self, hidden_size, config, 1, encoder_config)  # one score, not one per label

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """Each row's score [rows]."""
        return super().forward(hidden, attention_mask).squeeze(-1)


class QuestionAnsweringHead(nn.Module):
    """Each token's score as the answer's start and as its end: one linear layer of two outputs,
    transformers' *ForQuestionAnswering `qa_outputs`; logits [batch, length, 2]. The loss is the
    mean of the start and end cross-entropies against [batch, 2] token positions (the first
    token: no answer in the window)."""

    def __init__(self, hidden_size: int, config: HeadConfig, encoder_config: EncoderConfig = None) -> None:
        super().__init__()
        self.head = None  # the family's prediction head first, as ModernBERT's QA model has it
        if config.prediction_head:
            self.head = family_prediction_head(_needed(encoder_config, config))
        self.qa_outputs = nn.Linear(hidden_size, 2)
        self.layer_mix = layer_mix_of(config, encoder_config)

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        if self.layer_mix is not None:  # hidden: every layer's states, stacked
            hidden = self.layer_mix(hidden)
        if self.head is not None:
            hidden = self.head(hidden)
        return self.qa_outputs(hidden)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """(start cross-entropy + end cross-entropy) / 2 in float32."""
        starts, ends = logits.float().unbind(dim=-1)
        return (F.cross_entropy(starts, labels[:, 0]) + F.cross_entropy(ends, labels[:, 1])) / 2

    def decode(self, logits: Tensor) -> Tensor:
        """The start and end logits themselves [batch, length, 2], float32: answers are decoded per
        example over its windows (common/answer_spans.py)."""
        return logits.float()

    def scores(self, logits: Tensor) -> Tensor:
        """The start and end logits [batch, length, 2], float32."""
        return logits.float()


HEAD_TYPES: dict[str, type[nn.Module]] = {
    "classification": SequenceClassificationHead,
    "token_classification": TokenClassificationHead,
    "regression": RegressionHead,
    "multilabel": MultiLabelHead,
    "multiple_choice": MultipleChoiceHead,
    "extractive_qa": QuestionAnsweringHead,
}


def _needed(encoder_config: PretrainedConfig | None, config: HeadConfig,
            what: str = "the family's prediction head") -> PretrainedConfig:
    if encoder_config is None:
        raise ValueError(f"head {config.name!r} has {what}: build it with the encoder's config")
    return encoder_config


def layer_mix_of(config: HeadConfig, encoder_config: EncoderConfig) -> ScalarMix | None:
    """The head's mix of the embeddings' output and every encoder layer's, when it has one."""
    if not config.layer_mix:
        return None
    return ScalarMix(_needed(encoder_config, config, "a layer mix").num_hidden_layers + 1)


def build_head(hidden_size: int, config: HeadConfig, encoder_config: EncoderConfig = None) -> nn.Module:
    """The head module for `config.type` (`encoder_config`: the encoder's, which a head with the
    family's prediction head is built from)."""
    if config.type not in HEAD_TYPES:
        raise ValueError(
            f"head {config.name!r}: type {config.type!r} is not one of: {', '.join(HEAD_TYPES)}"
        )
    if config.type in LABEL_FREE_TYPES:
        if config.labels:
            raise ValueError(f"head {config.name!r}: a {config.type} head takes no labels")
    elif not config.labels:
        raise ValueError(f"head {config.name!r} has no labels")
    return HEAD_TYPES[config.type](hidden_size, config, encoder_config)


def logits_to_probabilities(logits: Tensor) -> Tensor:
    """Softmax in float32 (logits may be bf16 under autocast)."""
    return torch.softmax(logits.float(), dim=-1)
