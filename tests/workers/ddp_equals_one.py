"""Train the same fixed batches with one process (gradient accumulation over the batches) or with
two DDP processes (one batch each per step), and save the final weights.

    python tests/workers/ddp_equals_one.py MODEL_DIR OUT_DIR SHAPE ...          # one process
    torchrun --nproc_per_node N tests/workers/ddp_equals_one.py MODEL_DIR OUT_DIR SHAPE ...

Each SHAPE trains in turn, in the same processes (one start-up for all), into OUT_DIR/SHAPE.pt.

Each step trains one task, as the default step mode does: its two batches are the two ranks'
batches under DDP and the two accumulated micro-batches in one process, so the updates must be
equal. Dropout is off and the optimizer is plain SGD, so the weights differ only by float
rounding, and a gradient dropped in one setting shows as a weight left behind.
"""

import sys
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from transformers import AutoTokenizer

from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.data.teacher_columns import TEACHER_COLUMN
from mtl_nlp.modeling.adapters import AdapterShape
from mtl_nlp.modeling.sharing import SharingShape
from mtl_nlp.training.step import StepRunner
from mtl_nlp.training.teacher_annealing import TeacherAnnealing
from mtl_nlp.training.weighting import EqualWeighting

SHAPES = {
    "hard": (SharingShape(), None),
    "private": (SharingShape(private_layers=1), None),
    "soft_l2": (SharingShape(private_layers=1, soft_l2=0.5), None),
    "layer": (SharingShape(), 1),
    "frozen": (SharingShape(freeze_layers=1), None),
    "distilled": (SharingShape(), None),  # every batch carries teacher logits; the gold weight anneals
    "mixed": (SharingShape(), "mix"),  # the topic head reads a learned mix of every layer
    # a LoRA adapter per task in the top layer, the base frozen: each step trains one task's adapter
    "adapters": (SharingShape(adapters=AdapterShape(dropout=0.0, layers=1)), None),
}
TEXTS = ["the film is dull", "a great and moving story", "anna visited new york .", "the plot is thin",
         "what a lovely day", "the team won the final ."]
TASKS = ["sentiment", "topic", "sentiment", "topic"]  # the task of each step


def batches(tokenizer, task: str, step: int, teacher: bool = False) -> list[dict]:
    """The step's two batches of `task` (3 texts each, labels fixed by position; with `teacher`,
    teacher logits fixed by position too)."""
    classes = 2 if task == "sentiment" else 3
    made = []
    for part in range(2):
        texts = [TEXTS[(step + part * 3 + i) % len(TEXTS)] for i in range(3)]
        batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
        batch.pop("token_type_ids", None)
        batch["labels"] = torch.tensor([(step + part + i) % classes for i in range(3)])
        if teacher:
            batch[TEACHER_COLUMN] = torch.tensor([[float((step + part + i + k) % 3) for k in range(classes)]
                                                  for i in range(3)])
        made.append(batch)
    return made


def main() -> None:
    model_dir, out = sys.argv[1:3]
    ddp = DistributedDataParallelKwargs(find_unused_parameters=False)  # as mtl_nlp's runs set it
    accelerator = Accelerator(cpu=True, kwargs_handlers=[ddp])
    for shape_name in sys.argv[3:]:
        train_shape(accelerator, model_dir, shape_name, Path(out) / f"{shape_name}.pt")
    # every rank leaves gloo together: a rank exiting with the group alive can abort in its teardown
    accelerator.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def train_shape(accelerator: Accelerator, model_dir: str, shape_name: str, out: Path) -> None:
    """Train the fixed steps with sharing shape `shape_name`; the main process saves the weights."""
    shape, topic_layer = SHAPES[shape_name]
    torch.manual_seed(0)
    heads = [HeadConfig(name="sentiment", type="classification", labels=["neg", "pos"], dropout=0.0),
             HeadConfig(name="topic", type="classification", labels=["a", "b", "c"], dropout=0.0,
                        layer=None if topic_layer == "mix" else topic_layer, layer_mix=topic_layer == "mix")]
    model = MultiTaskModel.from_encoder(model_dir, heads, shape)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    ranks = accelerator.num_processes
    distilled = shape_name == "distilled"
    annealing = TeacherAnnealing("linear", 0.5, 2.0, total_steps=len(TASKS)) if distilled else None
    runner = StepRunner(accelerator, model, optimizer, scheduler, EqualWeighting(["sentiment", "topic"]),
                        grad_accum=2 // ranks, batches_per_step=1, max_grad_norm=0.0, annealing=annealing)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for step, task in enumerate(TASKS):
        step_batches = batches(tokenizer, task, step, teacher=distilled)
        mine = step_batches if ranks == 1 else [step_batches[accelerator.process_index]]
        runner.run(iter((task, batch) for batch in mine), step + 1)
    if accelerator.is_main_process:
        torch.save(accelerator.unwrap_model(model).state_dict(), out)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
