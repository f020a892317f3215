"""DDP without its per-step search for unused parameters.

Each batch trains one task, so the other tasks' heads (and private layers, and encoder parts a
task never reads, such as BERT's pooler) get no gradient. DDP's `find_unused_parameters=True`
handles that by walking the autograd graph after every forward. Here the unused parameters of each
task are found once, before training, and the step's synchronising backward adds a zero that
depends on them: every parameter then has a gradient in every synchronised backward, which is
what DDP expects without the search, and a head trained in an earlier micro-batch of the step
(under `no_sync`) is all-reduced with the rest.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def parameters_unused_by(model: nn.Module, tasks: list[str]) -> dict[str, list[nn.Parameter]]:
    """{task: the trainable parameters a batch of that task (or entry of several heads) gives no
    gradient}, from one two-token forward per task in eval mode (no dropout: the RNG stream is left
    as it was) plus the loss terms every training batch adds (the soft-sharing penalty)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    device = parameters[0].device if parameters else torch.device("cpu")
    input_ids = torch.zeros(1, 2, dtype=torch.long, device=device)
    attention_mask = torch.ones_like(input_ids)
    was_training = model.training
    model.eval()
    unused = {}
    try:
        with torch.enable_grad():
            for task in tasks:
                logits = model(task=task, input_ids=input_ids, attention_mask=attention_mask)["logits"]
                # an entry of several heads answers {head: logits}: it uses every head
                outputs = logits.values() if isinstance(logits, dict) else [logits]
                total = torch.stack([output.float().sum() for output in outputs]).sum()
                # every training batch adds the soft-sharing penalty, which reaches every task's
                # private layers: they are used by each task's batches, not idle
                penalty = model.sharing.penalty() if hasattr(model, "sharing") else None
                if penalty is not None:
                    total = total + penalty
                gradients = torch.autograd.grad(total, parameters, allow_unused=True)
                unused[task] = [p for p, g in zip(parameters, gradients) if g is None]
    finally:
        model.train(was_training)
    return unused


def zero_touching(parameters: list[nn.Parameter]) -> Tensor | float:
    """0, as a tensor that depends on every parameter given (plain 0.0 when there are none)."""
    if not parameters:
        return 0.0
    return torch.stack([p.sum() for p in parameters]).sum() * 0.0
