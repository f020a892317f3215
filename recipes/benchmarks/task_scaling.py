"""Cost as the number of tasks grows: 3, 10 and 30 tasks on one encoder.

    python -m recipes.benchmarks.task_scaling ENCODER_DIR [--tasks 3 10 30] [--steps 20]

Generated tasks alternate classification (4 labels) and BIO tagging (9 tags); each count runs in a
fresh process, which trains `--steps` one-task steps (batch 32 x 64 tokens, AdamW over the whole
model, the task of each step drawn uniformly) after 3 warm-up steps, saves a checkpoint and
answers 256 texts with the Predictor for every task. The table gives seconds per step, the
process's peak resident memory, the checkpoint size and the Predictor's milliseconds per text.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from .machine import describe_machine

CHILD = """
import json, random, resource, sys, tempfile, time
from pathlib import Path
import torch
from transformers import AutoTokenizer
from mtl_nlp import HeadConfig, MultiTaskModel
from mtl_nlp.inference import Predictor

encoder, count, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
rng = random.Random(0)
tags = ["O"] + [f"{p}-{t}" for t in ("PER", "ORG", "LOC", "MISC") for p in ("B", "I")]
heads = [HeadConfig(name=f"task{i}", type="token_classification", labels=tags) if i % 2 else
         HeadConfig(name=f"task{i}", type="classification", labels=["a", "b", "c", "d"])
         for i in range(count)]
model = MultiTaskModel.from_encoder(encoder, heads)
tokenizer = AutoTokenizer.from_pretrained(encoder)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
vocab = tokenizer.vocab_size
batch, length = 32, 64

def step():
    head = rng.choice(heads)
    ids = torch.randint(1000, vocab, (batch, length))
    mask = torch.ones_like(ids)
    if head.type == "classification":
        labels = torch.randint(0, 4, (batch,))
    else:
        labels = torch.randint(0, len(tags), (batch, length))
    loss = model(task=head.name, input_ids=ids, attention_mask=mask, labels=labels)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

model.train()
for _ in range(3):
    step()
started = time.perf_counter()
for _ in range(steps):
    step()
seconds_per_step = (time.perf_counter() - started) / steps
with tempfile.TemporaryDirectory() as folder:
    model.save_pretrained(folder, tokenizer=tokenizer)
    checkpoint_mb = sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20
words = "the film was about a company in Berlin where Maria worked with John on a new plan".split()
texts = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 24))) for _ in range(256)]
predictor = Predictor(model, tokenizer, max_length=128, mixed_precision="no")
predictor.predict(texts[:32])
started = time.perf_counter()
predictor.predict(texts)
ms_per_text = (time.perf_counter() - started) * 1000 / len(texts)
print(json.dumps({"tasks": count, "seconds_per_step": seconds_per_step, "checkpoint_mb": checkpoint_mb,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "ms_per_text": ms_per_text}))
"""


def measure(encoder: str, tasks: int, steps: int) -> dict:
    """One fresh process for `tasks` generated tasks."""
    result = subprocess.run([sys.executable, "-c", CHILD, encoder, str(tasks), str(steps)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("encoder", help="encoder folder or Hub id (the default MiniLM)")
    parser.add_argument("--tasks", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    rows = [measure(args.encoder, count, args.steps) for count in args.tasks]
    base = rows[0]
    print(describe_machine())
    print("| tasks | s/step | peak MB | checkpoint MB | Predictor ms/text (all tasks) |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        keys = ("seconds_per_step", "peak_mb", "checkpoint_mb", "ms_per_text")
        ratios = [row[key] / base[key] for key in keys]
        print(f"| {row['tasks']} | {row['seconds_per_step']:.3f} ({ratios[0]:.2f}x) | {row['peak_mb']:.0f} "
              f"({ratios[1]:.2f}x) | {row['checkpoint_mb']:.1f} ({ratios[2]:.2f}x) | "
              f"{row['ms_per_text']:.2f} ({ratios[3]:.2f}x) |", flush=True)


if __name__ == "__main__":
    main()
