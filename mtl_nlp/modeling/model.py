"""MultiTaskModel: one shared encoder, one head per task, one self-describing checkpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoModel, PreTrainedModel

from mtl_nlp.common.errors import no_checkpoint_at
from mtl_nlp.common.run_files import CHECKPOINT_CONFIG, HEADS_WEIGHTS, PRIVATE_WEIGHTS
from mtl_nlp.modeling.adapters import ADAPTERS_DIR, is_adapter_parameter
from mtl_nlp.modeling.blocks import block_class_names
from mtl_nlp.modeling.checkpoint_files import PENDING, consistent_view, read_manifest_config, write_checkpoint
from mtl_nlp.modeling.distillation import distillation_loss
from mtl_nlp.modeling.encoder import ModelLoadError, check_encoder_kind, load_encoder
from mtl_nlp.modeling.heads import HeadConfig, build_head, family_head_config
from mtl_nlp.modeling.hub_checkpoint import resolve_checkpoint
from mtl_nlp.modeling.options import option_rows, option_scores
from mtl_nlp.modeling.sharing import LayerSharing, SharingShape

FORMAT_VERSION = 1


class MultiTaskModel(nn.Module):
    """A shared Hugging Face encoder with a ModuleDict of task heads.

    `sharing` shapes how tasks share the encoder (private top layers, frozen layers); a head's
    `layer` picks the encoder layer it reads. `pretrained=False` rebuilds a saved model, whose
    private layers come from its checkpoint rather than from the encoder's top layers.
    """

    def __init__(
        self, encoder: PreTrainedModel, heads: list[HeadConfig], sharing: SharingShape | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        if pretrained:  # a new model: its heads compute the encoder family's classifiers
            check_encoder_kind(encoder.config, type(encoder).__name__)
            heads = [family_head_config(config, encoder.config) for config in heads]
        self.head_configs = {config.name: config for config in heads}
        # {entry: its heads}: a batch of an entry trains all of its heads at once
        self.entries: dict[str, list[str]] = {}
        for config in heads:
            if config.entry is not None:
                self.entries.setdefault(config.entry, []).append(config.name)
        hidden_size = encoder.config.hidden_size
        self.heads = nn.ModuleDict({c.name: build_head(hidden_size, c, encoder.config) for c in heads})
        if pretrained:
            self._init_poolers(encoder)
        self.sharing = LayerSharing(
            encoder, sharing or SharingShape(), {c.name: c.layer for c in heads}, pretrained,
            mixed={c.name for c in heads if c.layer_mix},
            adapter_of={c.name: c.entry or c.name for c in heads},
        )

    def _init_poolers(self, encoder: PreTrainedModel) -> None:
        """Pooler heads start from the encoder's pretrained pooler where it has one, else as the
        encoder initialises its own layers (transformers' `_init_weights`). `pooler_starts` says
        which, for the run to report once it knows which heads a checkpoint replaces."""
        self.pooler_starts: dict[str, str] = {}
        for name, head in self.heads.items():
            if getattr(head, "head", None) is not None:  # a tagging head's family prediction head
                encoder._init_weights(head.head)
            if getattr(head, "pooler", None) is None:
                continue
            if head.init_pooler_from(encoder):
                self.pooler_starts[name] = "the encoder's pretrained pooler"
            else:
                encoder._init_weights(head.pooler)
                self.pooler_starts[name] = f"fresh ({encoder.config.model_type} has no pretrained pooler)"

    @classmethod
    def from_encoder(
        cls, model: str, heads: list[HeadConfig], sharing: SharingShape | None = None
    ) -> MultiTaskModel:
        """A new model: pretrained encoder `model` (Hub id or path), freshly initialised heads."""
        return cls(load_encoder(model), heads, sharing)

    @property
    def task_names(self) -> list[str]:
        """Every head's name: the tasks the model answers."""
        return list(self.head_configs)

    @property
    def batch_tasks(self) -> list[str]:
        """The tasks a training batch belongs to: each entry of several heads once, and each head
        of its own."""
        names: list[str] = []
        for config in self.head_configs.values():
            name = config.entry or config.name
            if name not in names:
                names.append(name)
        return names

    @property
    def _no_split_modules(self) -> list[str]:
        """The encoder's unsplittable blocks (e.g. BertEmbeddings, BertLayer; the layer stack's
        class where the family declares none): the units FSDP's transformer-based wrapping
        shards, private layer copies included."""
        return block_class_names(self.encoder)

    def encode(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """Last hidden states of the shared encoder, [batch, length, hidden]."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return self.encoder(**inputs).last_hidden_state

    def task_states(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None,
        tasks: list[str] | None = None,
    ) -> dict[str, Tensor]:
        """{task: the hidden states its head reads}: shared layers once, private layers per task."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return self.sharing.hidden_states(self.encoder, inputs, list(tasks or self.heads))

    def forward(
        self, task: str, input_ids: Tensor, attention_mask: Tensor,
        token_type_ids: Tensor | None = None, labels: Tensor | dict[str, Tensor] | None = None,
        teacher: Tensor | dict[str, Tensor] | None = None, gold_weight: float = 1.0,
        temperature: float = 1.0, choice_mask: Tensor | None = None,
    ) -> dict[str, Any]:
        """Output of one task's head ("logits"; regression values for a regression head), and the
        head's own loss when labels are given. For an entry of several heads, "logits" is {head:
        logits} from one encoder pass and the loss is the sum of the heads' weighted losses
        (`labels`: {head: labels}).

        `teacher` (a batch's teacher outputs; {head: outputs} for an entry, holding the heads that
        have a teacher) turns a head's loss into its distillation loss with weight `gold_weight`
        on the gold labels and `temperature` on the teacher's logits (modeling/distillation.py).

        A multiple-choice task reads [batch, options, length] inputs (`choice_mask` [batch, options]
        marks the options each example has) and answers [batch, options] scores."""
        if task in self.entries:
            heads = self.entries[task]
        elif task in self.heads:
            heads = [task]
        else:
            known = ", ".join([*self.heads, *self.entries])
            raise KeyError(f"unknown task {task!r}; this model has: {known}")
        logits = self._logits(heads, input_ids, attention_mask, token_type_ids, choice_mask)
        if task not in self.entries:
            output = {"logits": logits[task]}
            if labels is not None:
                output["loss"] = self._loss(task, logits[task], labels, teacher, gold_weight, temperature)
        else:
            output = {"logits": logits}
            if labels is not None:
                teachers = teacher or {}
                losses = [self.head_configs[head].loss_weight * self._loss(
                    head, logits[head], labels[head], teachers.get(head), gold_weight, temperature)
                    for head in heads]
                output["loss"] = torch.stack(losses).sum()
        penalty = self.sharing.penalty() if labels is not None and self.training else None
        if penalty is not None:  # soft sharing: every training batch pulls the private copies together
            output["loss"] = output["loss"] + penalty
        return output

    def _loss(self, head: str, logits: Tensor, labels: Tensor, teacher: Tensor | None,
              gold_weight: float, temperature: float) -> Tensor:
        """The head's own loss, or its distillation loss when it has teacher outputs."""
        if teacher is None:
            return self.heads[head].loss(logits, labels)
        return distillation_loss(self.head_configs[head].type, logits, labels, teacher, gold_weight,
                                 temperature)

    def forward_all(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None,
        tasks: list[str] | None = None, choice_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Logits of every head (or of `tasks`) from ONE encoder pass (multiple-choice tasks: of
        [batch, options, length] inputs, and only those)."""
        return self._logits(list(tasks or self.heads), input_ids, attention_mask, token_type_ids, choice_mask)

    def _logits(self, heads: list[str], input_ids: Tensor, attention_mask: Tensor,
                token_type_ids: Tensor | None, choice_mask: Tensor | None) -> dict[str, Tensor]:
        """{head: its logits}: one encoder pass over the rows (each option of each example, for
        multiple-choice heads, whose row scores are then arranged [batch, options])."""
        choosing = [head for head in heads if self.head_configs[head].type == "multiple_choice"]
        if choosing and len(choosing) != len(heads):
            raise ValueError(f"multiple-choice task(s) {', '.join(choosing)} read a question's options, the "
                             f"other tasks texts: ask for them apart")
        if choosing:
            input_ids, attention_mask, token_type_ids, choice_mask = option_rows(
                input_ids, attention_mask, token_type_ids, choice_mask)
        states = self.task_states(input_ids, attention_mask, token_type_ids, heads)
        logits = {head: self.heads[head](states[head], attention_mask) for head in heads}
        if choosing:
            logits = {head: option_scores(scores, choice_mask) for head, scores in logits.items()}
        return logits

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters every task trains (the shared encoder); heads, private layers and adapters
        are not."""
        return (p for name, p in self.encoder.named_parameters()
                if p.requires_grad and not is_adapter_parameter(name))

    def checkpoint_config(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON that makes a checkpoint directory self-describing."""
        return {
            "format_version": FORMAT_VERSION,
            "encoder_type": self.encoder.config.model_type,
            "tasks": [config.to_dict() for config in self.head_configs.values()],
            "sharing": self.sharing.shape.to_dict(),
            **(extra or {}),
        }

    def save_pretrained(
        self, directory: str | Path, tokenizer: Any = None, extra: dict[str, Any] | None = None,
        state_dict: dict[str, Tensor] | None = None,
    ) -> None:
        """Write encoder (config + safetensors), tokenizer, heads and mtl_nlp.json to `directory`.

        `state_dict` (this model's keys) replaces the module's own weights, e.g. the whole weights
        gathered from a sharded model. The checkpoint switches from the previous save to this one
        as a whole (see checkpoint_files.py): an interrupted save never leaves files of two saves
        that load.
        """
        state = self.state_dict() if state_dict is None else state_dict

        def part(prefix: str) -> dict[str, Tensor]:
            return {name[len(prefix):]: tensor.detach().contiguous().cpu()
                    for name, tensor in state.items() if name.startswith(prefix)}

        adapters = self.sharing.adapters

        def write_files(folder: Path) -> None:
            encoder = part("encoder.") if state_dict is not None else None
            if adapters is not None:  # the base without adapters, so that AutoModel reads it
                encoder = adapters.base_state_dict()
                adapters.save(folder / ADAPTERS_DIR)
            with self.sharing.saving(self.encoder):
                self.encoder.save_pretrained(folder, safe_serialization=True, state_dict=encoder)
            if tokenizer is not None:
                tokenizer.save_pretrained(folder)
            save_file(part("heads."), folder / HEADS_WEIGHTS)
            if len(self.sharing.private):
                save_file(part("sharing.private."), folder / PRIVATE_WEIGHTS)

        write_checkpoint(Path(directory), write_files, self.checkpoint_config(extra))

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, revision: str | None = None, token: str | None = None
    ) -> MultiTaskModel:
        """Rebuild a saved model from its directory alone (files checked against its manifest),
        or from a Hub repository id (`revision`: a branch, tag or commit; `token` for private
        repositories)."""
        directory = resolve_checkpoint(directory, revision, token)
        read_checkpoint_config(directory)  # a clear error when it is not a checkpoint
        with consistent_view(directory) as folder:
            return cls.load_checked(folder)

    @classmethod
    def load_checked(cls, folder: Path) -> MultiTaskModel:
        """Rebuild a model from a folder of `consistent_view` (checked already)."""
        config = json.loads((folder / CHECKPOINT_CONFIG).read_text())
        encoder = AutoModel.from_pretrained(str(folder))
        sharing = None
        if "sharing" in config:  # saved before share_stack_modules existed: each copy had its own
            # (without private copies there is nothing to share, and such a model is today's)
            old_copies = config["sharing"].get("private_layers", 0) > 0
            sharing = SharingShape(**{"share_stack_modules": not old_copies, **config["sharing"]})
        model = cls(encoder, [HeadConfig(**task) for task in config["tasks"]], sharing, pretrained=False)
        model.heads.load_state_dict(load_file(folder / HEADS_WEIGHTS))
        if len(model.sharing.private):
            model.sharing.private.load_state_dict(load_file(folder / PRIVATE_WEIGHTS))
        if model.sharing.adapters is not None:
            model.sharing.adapters.load(folder / ADAPTERS_DIR)
        return model

    def checkpoint_state_dict(self, directory: str | Path) -> dict[str, Tensor]:
        """The weights of the checkpoint in `directory` under this model's keys, checked to be of
        this model's tasks."""
        saved = MultiTaskModel.from_pretrained(directory)
        if saved.task_names != self.task_names:
            raise ModelLoadError(
                f"{directory} holds tasks {saved.task_names}, this model has {self.task_names}"
            )
        return saved.state_dict()

    def start_from_checkpoint(self, directory: str | Path) -> list[str]:
        """Copy a saved checkpoint's encoder, private layers and the heads of the tasks it shares
        with this model (same type and labels) into this model; return those tasks. The sharing
        shape must be the checkpoint's, so every encoder weight has its counterpart, except that
        adapters of this model start fresh on a checkpoint without them (its encoder their base)."""
        saved = MultiTaskModel.from_pretrained(directory)
        # a second stage of adapters: fresh adapters on the checkpoint's encoder as their base
        onto_base = self.sharing.adapters is not None and saved.sharing.adapters is None
        shape = SharingShape(**{**self.sharing.shape.to_dict(), "adapters": None}) if onto_base else \
            self.sharing.shape
        if not saved.sharing.shape.same_weights_as(shape):
            raise ModelLoadError(f"{directory} shares its encoder as {saved.sharing.shape}, this model as "
                                 f"{self.sharing.shape}: start from it with the same sharing.* settings")
        same = [task for task, config in self.head_configs.items()
                if (other := saved.head_configs.get(task)) is not None
                and _head_shape(other) == _head_shape(config)]
        theirs, ours = saved.state_dict(), self.state_dict()
        if onto_base:
            self.sharing.adapters.load_base(saved.encoder.state_dict())
            ours = {key: tensor for key, tensor in ours.items() if not key.startswith("encoder.")}
        copied = {}
        for key, tensor in ours.items():
            owner = owning_task(key)
            if owner is not None and owner not in same:
                continue  # a fresh head (or its private layers): not in the checkpoint
            if key not in theirs or theirs[key].shape != tensor.shape:
                raise ModelLoadError(f"{directory} has no weight {key} of shape {tuple(tensor.shape)}: "
                                     "it was trained from another encoder")
            copied[key] = theirs[key]
        with torch.no_grad():
            self.load_state_dict(copied, strict=False)
        return same

    def load_weights_from(self, directory: str | Path) -> None:
        """Copy a saved checkpoint's encoder and head weights into this model, in place."""
        with torch.no_grad():
            self.load_state_dict(self.checkpoint_state_dict(directory))


def _head_shape(config: HeadConfig) -> tuple:
    """What a head's weights mean: two heads alike in these hold interchangeable weights."""
    return (config.type, config.labels, config.pooling, config.layer, config.prediction_head,
            config.layer_mix)


def owning_task(key: str) -> str | None:
    """The task a state-dict key belongs to (its head or private layers); None for the encoder."""
    parts = key.split(".")
    if parts[0] == "heads":
        return parts[1]
    if parts[:2] == ["sharing", "private"]:
        return parts[2]
    return None


def is_checkpoint(directory: str | Path) -> bool:
    """True when `directory` holds an mtl_nlp checkpoint (its mtl_nlp.json, or a complete save
    interrupted while moving its files into place)."""
    directory = Path(directory)
    return (directory / CHECKPOINT_CONFIG).is_file() or (directory / PENDING / CHECKPOINT_CONFIG).is_file()


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """The parsed mtl_nlp.json of a checkpoint, with a clear error when it is not one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelLoadError(no_checkpoint_at(directory))
    path = directory / CHECKPOINT_CONFIG
    if not path.is_file() and not (directory / PENDING / CHECKPOINT_CONFIG).is_file():
        raise ModelLoadError(f"{directory} is not an mtl_nlp checkpoint: {path.name} not found")
    config = read_manifest_config(directory)
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(
            f"{path}: format_version {config.get('format_version')} is not supported "
            f"(this mtl_nlp reads version {FORMAT_VERSION})"
        )
    return config
