"""The sections of a run's configuration: dataclasses whose fields are the config keys, with their
defaults and a comment saying what each does."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_TASKS = ("demo_ner", "demo_sentiment", "demo_topic")
EVAL_EACH_EPOCH = "epoch"  # train.eval_every: evaluate once an epoch


@dataclass
class TrainConfig:
    epochs: float = 3.0  # passes over the mixed training data; ignored when max_steps is set
    # what one epoch is: `total`, as many batches as all tasks have together; `each_task`, long
    # enough that the sampler gives every task as many batches as its training set has
    epoch: str = "total"
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    batch_size: int = 32  # examples per batch (one task per batch)
    max_tokens: int | None = None  # token budget per batch (padded length x rows); overrides batch_size
    # batches per length-sorting window: examples are shuffled, sorted by length inside a window
    # and cut into batches, so padding is small; 1 draws random batches as the HF Trainer does
    # (slower; at lr 5e-5 worth 0.7 F1 on CoNLL-2003, a tie at the default lr: BENCHMARKS.md)
    sort_window: int = 64
    eval_batch_size: int = 64  # examples per evaluation batch
    lr: float = 1e-4  # peak learning rate of AdamW (measured best for the default encoder; see README)
    head_lr: float | None = None  # learning rate of the task heads; None means lr
    layer_lr_decay: float | None = None  # e.g. 0.9: each layer's lr is 0.9 x the one above's; None: all at lr
    weight_decay: float = 0.01  # AdamW weight decay (not applied to biases and LayerNorm)
    warmup_ratio: float = 0.1  # fraction of the optimizer steps spent warming up linearly
    grad_accum: int = 1  # batches accumulated per optimizer step
    max_grad_norm: float = 1.0  # gradient clipping norm; 0 disables clipping
    # clip: a step's gradient above max_grad_norm is scaled down to it; normalize: every step's
    # gradient on the shared encoder is scaled to it (the rest clipped), so tasks whose encoder
    # gradients differ in size move Adam's shared moments alike (a task with small gradients
    # otherwise takes small steps beside one with large ones)
    grad_norm_mode: str = "clip"
    # evaluate (and keep the best checkpoint) every N optimizer steps, or "epoch": once an epoch
    # as train.epoch counts it; 0 evaluates only at the end
    eval_every: int | str = 0
    log_every: int = 10  # refresh the progress bar's running losses (and record them) every N steps
    step_mode: str = "one_task"  # one_task: one sampled task per step; all_tasks: a batch of every task
    save_total_limit: int = 1  # resumable states kept in output_dir (state/, state-<step>/); 0: none
    early_stopping_patience: int | None = None  # stop after this many evaluations without a new best


@dataclass
class SamplingConfig:
    strategy: str = "temperature"  # proportional | temperature | uniform | annealed | round_robin
    temperature: float = 2.0  # T of temperature/annealed: p_i proportional to n_i ** (1/T)
    anneal: str = "up"  # annealed: up moves the exponent 1 -> 1/T over the run, down moves 1/T -> 1
    cap: int | None = None  # at most this many training examples of a task count towards its size


@dataclass
class WeightingConfig:
    method: str = "equal"  # equal | log_size | uncertainty | dwa | rlw | pcgrad | cagrad
    window: int = 50  # dwa: optimizer steps per running-loss window (weights change once a window)
    temperature: float = 2.0  # dwa: softmax temperature of the loss ratios
    cagrad_c: float = 0.5  # cagrad: radius c of the ball around the mean gradient
    lr: float = 0.01  # uncertainty: learning rate of the learned log-variances


@dataclass
class AdapterConfig:
    """Per-task adapters (peft) in the shared encoder: each task trains its own, the base is shared."""

    method: str = "none"  # none | lora: a LoRA adapter per task, trained beside its head
    r: int = 8  # the rank of each LoRA update
    alpha: float = 16.0  # LoRA's scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.1  # dropout on the adapter's input
    # the modules that get adapters; None: the family's attention projections (README's families table)
    target_modules: list[str] | None = None
    layers: int | str = "all"  # all, or k: adapters in the top k encoder layers only
    train_base: bool = False  # train the shared encoder too; False keeps it frozen (classic PEFT)
    lr: float | None = None  # learning rate of the adapters; None means train.lr


@dataclass
class SharingConfig:
    private_layers: int = 0  # the top k encoder layers are copied per task (0: hard sharing)
    soft_l2: float = 0.0  # lambda of the L2 pull of the private copies towards their mean
    freeze_layers: int = 0  # freeze the embeddings and the bottom n encoder layers
    freeze_embeddings: bool = False  # freeze the embeddings only
    # freeze the whole shared encoder: only private layers and heads train (the second stage of
    # `mtl-nlp finetune --private-layers-only`; with hard sharing, the heads alone)
    freeze_encoder: bool = False
    adapters: AdapterConfig = field(default_factory=AdapterConfig)


@dataclass
class DiagnosticsConfig:
    conflict_every: int = 0  # every K steps record the task x task gradient cosines (0: off)


@dataclass
class DistillConfig:
    # {task or head: teacher checkpoint (a folder or a Hub id) that has it}; each named task learns
    # from the teacher's outputs over its training examples beside its gold labels
    teachers: dict[str, str] = field(default_factory=dict)
    # linear: the gold labels' weight rises from 0 to 1 over the run (teacher annealing, BAM!);
    # none: it stays gold_weight
    anneal: str = "linear"
    gold_weight: float = 0.5  # anneal none: the gold labels' weight; the teacher's is 1 - it
    temperature: float = 1.0  # teacher probabilities are softmax(teacher logits / temperature)


@dataclass
class RunConfig:
    model: str = DEFAULT_MODEL  # Hub id or local path of any AutoModel encoder
    output_dir: str = "outputs/cls_ner"  # best checkpoint, metrics.json and training state
    data_dir: str | None = None  # read built-in tasks from local files under this folder
    tasks: list[Any] = field(default_factory=lambda: list(DEFAULT_TASKS))  # names or inline specs
    max_length: int = 128  # subword tokens per example, special tokens included
    # tokens shared by the overlapping windows that score long tagging examples (max_length // 4)
    stride: int | None = None
    max_train_examples: int | None = None  # use a seeded random subset of each train split
    max_eval_examples: int | None = None  # use the first N examples of validation and test splits
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16; auto picks bf16 where supported
    resume_from: str | None = None  # a run's output_dir (or its state/ folder) to resume
    # start from this mtl_nlp checkpoint's weights: its encoder (and private layers) and the heads of
    # the tasks it has with the same labels; other heads start fresh (`mtl-nlp finetune` sets it)
    init_from: str | None = None
    seed: int = 42  # seeds weights, shuffling and the task sequence
    cache_dir: str | None = None  # datasets cache; None uses the Hugging Face default
    cpu_threads: int | None = None  # torch threads per process on CPU; None: cores / local processes
    # Accelerate trackers (tensorboard, wandb, mlflow, ...) logging into output_dir/logs; none by default
    tracker: list[str] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    sharing: SharingConfig = field(default_factory=SharingConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy, for logging and for saving next to a checkpoint."""
        return dataclasses.asdict(self)
