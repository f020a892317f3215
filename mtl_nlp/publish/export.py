"""Export one task of a multi-task checkpoint to a standard transformers model.

The export is a plain transformers model directory of the task's type (`AutoModelFor...`: token or
sequence classification, multiple choice, question answering; config with id2label/label2id,
safetensors weights, the tokenizer, a model card) that transformers loads with no mtl_nlp
installed. It holds exactly the layers the task
uses: the shared layers, the task's private layers, and no layer above the one its head reads.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel

from mtl_nlp.common.errors import MtlNlpError
from mtl_nlp.common.output_folders import check_output_folder
from mtl_nlp.common.task_types import AUTO_MODEL_CLASSES, SENTENCE_AUTO_MODEL
from mtl_nlp.modeling.heads import PREDICTION_HEAD_FAMILIES, HeadConfig, family_pooler_activation
from mtl_nlp.modeling.hub_checkpoint import resolve_checkpoint
from mtl_nlp.modeling.model import MultiTaskModel, read_checkpoint_config

# Where each encoder family's AutoModelForSequenceClassification keeps the two layers of a pooler
# head (first token -> dense -> the family's activation -> classifier), by config.model_type:
# (dense, output layer), "{base}" standing for the model's base_model_prefix.
SEQUENCE_HEAD_LAYOUT = {
    "bert": ("{base}.pooler.dense", "classifier"),
    "albert": ("{base}.pooler", "classifier"),
    "distilbert": ("pre_classifier", "classifier"),
    "deberta-v2": ("pooler.dense", "classifier"),
    "electra": ("classifier.dense", "classifier.out_proj"),
    "mpnet": ("classifier.dense", "classifier.out_proj"),
    "roberta": ("classifier.dense", "classifier.out_proj"),
    "xlm-roberta": ("classifier.dense", "classifier.out_proj"),
    "camembert": ("classifier.dense", "classifier.out_proj"),
    # ModernBERT: the first token -> its prediction head (dense, activation, norm) -> classifier
    "modernbert": ("head", "classifier"),
}
# The same for each family's AutoModelForMultipleChoice, where it differs: RoBERTa, XLM-R,
# CamemBERT and MPNet read the encoder's pooler (first token, dense, tanh), ELECTRA a summary layer.
CHOICE_HEAD_LAYOUT = {
    **SEQUENCE_HEAD_LAYOUT,
    **dict.fromkeys(("roberta", "xlm-roberta", "camembert", "mpnet"), ("{base}.pooler.dense", "classifier")),
    "electra": ("sequence_summary.summary", "classifier"),
}
PROBLEM_TYPES = {
    "classification": "single_label_classification",
    "regression": "regression",
    "multilabel": "multi_label_classification",
}


class ExportError(MtlNlpError, ValueError):
    """A task that cannot be written as a standard transformers model, and why."""


def export_task(checkpoint: str | Path, task: str, output_dir: str | Path, overwrite: bool = False,
                merge: bool = False) -> Path:
    """Write task `task` of `checkpoint` (a directory or a Hub repository id) as a standard
    transformers model in `output_dir`, which must be new or empty unless `overwrite` (and is
    never the checkpoint itself).

    A checkpoint with adapters (sharing.adapters) exports the task's adapter as a peft adapter
    folder on its base, its head in `modules_to_save` (publish/adapter_export.py); `merge` writes
    a plain transformers model with the adapter merged instead.

    Raises ExportError naming the reason (and the option to change) when the task's head or
    encoder has no standard transformers equivalent.
    """
    checkpoint = resolve_checkpoint(checkpoint)
    output_dir = check_output_folder(output_dir, overwrite, source=checkpoint)
    model = MultiTaskModel.from_pretrained(checkpoint)
    if task not in model.head_configs:
        raise ExportError(f"{checkpoint} has no task {task!r}; its tasks: {', '.join(model.task_names)}")
    head = model.head_configs[task]
    _check_adapter_export(checkpoint, model, task, merge)
    if head.layer_mix:
        raise ExportError(f"task {task!r} reads a learned mix of every encoder layer (layer_mix), which no "
                          "standard transformers classifier computes; serve it with mtl_nlp (Predictor, "
                          "serve, ONNX), or train it without layer_mix to export it")
    layout = _check_exportable(model, head)
    config = _task_config(checkpoint, model, head)
    standard = _auto_class(head).from_config(config)
    if head.type == "token_classification":
        _check_token_classifier(standard, head)
    head_state = _head_state(model, head, layout, standard)
    missing, unexpected = standard.load_state_dict({**_encoder_state(model, task, standard), **head_state},
                                                   strict=False)
    if missing or unexpected:  # a mapping bug, never a user error: fail before writing anything
        raise RuntimeError(f"export of {task!r}: missing {missing}, unexpected {unexpected}")
    output_dir.mkdir(parents=True, exist_ok=True)
    if model.sharing.adapters is not None:
        from mtl_nlp.publish.adapter_export import save_task_adapter

        base = _adapter_base(checkpoint, model)
        save_task_adapter(standard, model, head, head_state, output_dir, base, merge)
    else:
        standard.save_pretrained(output_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(checkpoint)).save_pretrained(output_dir)
    from mtl_nlp.reports.model_card import write_export_card

    adapters = model.sharing.adapters is not None
    adapter_base = _adapter_base(checkpoint, model) if adapters and not merge else None
    write_export_card(output_dir, checkpoint, read_checkpoint_config(checkpoint), head, adapter_base)
    return output_dir


def _check_exportable(model: MultiTaskModel, head: HeadConfig) -> tuple[str, str] | None:
    """The sequence-head layout of the encoder family (None for a tagging head, which any family
    with a linear token classifier takes, see _check_token_classifier); ExportError when a
    sentence head's family has none, or the head does not compute what the family's does."""
    encoder_config = model.encoder.config
    model_type = encoder_config.model_type
    if head.type in ("token_classification", "extractive_qa"):  # heads on every token
        return None
    if model_type in PREDICTION_HEAD_FAMILIES and head.pooling == "pooler" and not head.prediction_head:
        raise ExportError(f"task {head.name!r}: {model_type}'s sequence classifier has a prediction head "
                          "(dense, activation, norm) that this head, trained before heads had it, lacks; "
                          "train it again to export it")
    layouts = CHOICE_HEAD_LAYOUT if head.type == "multiple_choice" else SEQUENCE_HEAD_LAYOUT
    if model_type not in layouts:
        raise ExportError(
            f"task {head.name!r}: sentence heads export for the encoder families "
            f"{', '.join(layouts)}; this checkpoint's encoder is {model_type!r} "
            "(its tagging heads export)"
        )
    expected = family_pooler_activation(encoder_config)
    if head.pooling == "pooler" and head.pooler_activation != expected:
        raise ExportError(
            f"task {head.name!r}: its pooler head applies {head.pooler_activation}, where "
            f"{model_type}'s sequence classifier applies {expected} (the head was trained before "
            "heads followed their encoder family); train it again to export it"
        )
    hidden = encoder_config.hidden_size
    if getattr(encoder_config, "pooler_hidden_size", hidden) != hidden:
        raise ExportError(f"task {head.name!r}: the encoder's pooler_hidden_size differs from its "
                          "hidden_size, which the pooler head does not reproduce")
    if head.type != "token_classification" and head.pooling != "pooler":
        raise ExportError(
            f"task {head.name!r} reads its text with pooling {head.pooling!r}, which no standard "
            "transformers classifier computes; train the task with `pooling: pooler` in its task "
            "entry (the first token through a dense layer, as the family's sequence classifier does) "
            "to export it"
        )
    return layouts[model_type]


def _check_token_classifier(standard: PreTrainedModel, head: HeadConfig) -> None:
    """ExportError unless the family's token classifier is what a tagging head is: one linear
    `classifier` on the encoder's hidden states, after the family's prediction head where the
    head has one (ModernBERT), so the export computes the head exactly."""
    prefix = standard.base_model_prefix + "."
    own = ("classifier.", "head.") if head.prediction_head else ("classifier.",)
    extra = sorted(name for name in standard.state_dict() if not name.startswith((prefix, *own)))
    if extra:
        raise ExportError(
            f"task {head.name!r}: {type(standard).__name__} puts layers between the encoder and its "
            f"classifier ({', '.join(extra)}), which the tagging head does not have; it cannot be "
            "exported as that class"
        )


def _auto_class(head: HeadConfig) -> type:
    return getattr(transformers, AUTO_MODEL_CLASSES.get(head.type, SENTENCE_AUTO_MODEL))


def _task_config(checkpoint: Path, model: MultiTaskModel, head: HeadConfig):
    """The encoder's config with the task's depth, labels and problem type."""
    config = AutoConfig.from_pretrained(str(checkpoint))
    depth = model.sharing.depth(head.name) or config.num_hidden_layers
    if model.sharing.layout is not None:  # ModernBERT also cuts its per-layer attention kinds
        model.sharing.layout.export_config(config, depth, model.sharing.shape.layer_types)
    else:
        config.num_hidden_layers = depth
    if head.type == "regression":
        config.num_labels = 1
        config.id2label, config.label2id = {0: "value"}, {"value": 0}
    elif head.type not in ("multiple_choice", "extractive_qa"):  # options or spans: no labels
        config.id2label = dict(enumerate(head.labels))
        config.label2id = {label: index for index, label in enumerate(head.labels)}
    if head.type in PROBLEM_TYPES:
        config.problem_type = PROBLEM_TYPES[head.type]
    config.classifier_dropout = head.dropout
    if head.prediction_head and head.type != "token_classification":
        config.classifier_pooling = "cls"  # a pooler head reads the first token
    config.architectures = None  # set by save_pretrained from the class that writes it
    if hasattr(config, "mtl_nlp_encoder"):  # the export holds the task's whole encoder
        del config.mtl_nlp_encoder
    return config


def _encoder_state(model: MultiTaskModel, task: str, standard: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The task's encoder weights under the standard model's names: shared layers, then the
    task's private layers, up to the layer its head reads; the pooler only where the standard
    model has one."""
    prefix = standard.base_model_prefix
    wanted = set(standard.state_dict())
    adapters = model.sharing.adapters
    encoder = adapters.base_state_dict() if adapters is not None else model.encoder.state_dict()
    state = {f"{prefix}.{name}": tensor for name, tensor in encoder.items()}
    if task in model.sharing.private:
        shared, layers = model.sharing.shared_count, model.sharing.layout.path
        for name, tensor in model.sharing.private[task].state_dict().items():
            if not name.startswith("layer."):  # the stack's other modules are the shared model's
                continue
            _, index, rest = name.split(".", 2)  # layer.{i}.rest
            state[f"{prefix}.{layers}.{shared + int(index)}.{rest}"] = tensor
    return {name: tensor for name, tensor in state.items() if name in wanted}


def _check_adapter_export(checkpoint: Path, model: MultiTaskModel, task: str, merge: bool) -> None:
    """--merge needs adapters; an adapter loads on its whole base, so its head reads the top layer."""
    if model.sharing.adapters is None:
        if merge:
            raise ExportError(f"{checkpoint} has no adapters (sharing.adapters) to merge: export it "
                              "without --merge")
        return
    depth = model.sharing.task_layers.get(task)
    if depth is not None and depth != model.encoder.config.num_hidden_layers:
        raise ExportError(f"task {task!r} reads encoder layer {depth}, and an adapter loads on its whole "
                          "base encoder: train it on the top layer to export its adapter")


def _adapter_base(checkpoint: Path, model: MultiTaskModel) -> str:
    """Where an adapter export's base encoder is: the pretrained model the run started from when it
    kept it frozen, else the checkpoint, whose encoder files are the trained base."""
    adapters = model.sharing.adapters
    if not adapters.shape.train_base and adapters.shape.base:
        return adapters.shape.base
    return str(Path(checkpoint).resolve())


def _head_state(
    model: MultiTaskModel, head: HeadConfig, layout: tuple[str, str] | None, standard: PreTrainedModel
) -> dict[str, torch.Tensor]:
    """The head's weights under the standard model's names."""
    weights = model.heads[head.name].state_dict()
    if head.type == "token_classification":  # (`head`) + dropout + `classifier`: the same names
        return dict(weights)
    if head.type == "extractive_qa":  # `qa_outputs`, which ModernBERT names `classifier`
        output = "qa_outputs" if "qa_outputs.weight" in standard.state_dict() else "classifier"
        return {name.replace("qa_outputs.", f"{output}.", 1): tensor for name, tensor in weights.items()}
    dense, output = (name.format(base=standard.base_model_prefix) for name in layout)
    names = {"pooler": dense, "classifier": output}
    return {f"{names[module]}.{param}": tensor
            for module_param, tensor in weights.items()
            for module, param in [module_param.split(".", 1)]}
