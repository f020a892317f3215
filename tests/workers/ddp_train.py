"""Train a few steps of the recipe under torchrun and save each rank's final weights.

    torchrun --nproc_per_node 2 tests/workers/ddp_train.py OUT_DIR key=value ...

Each rank writes OUT_DIR/rank{N}.pt with its model and loss-weighting state and the tasks it
trained at each step, so a test can check that every process trained the same task sequence and
ends with identical weights.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))

import cls_ner  # noqa: E402
from accelerate import PartialState  # noqa: E402

from mtl_nlp.training.step import StepRunner  # noqa: E402
from mtl_nlp.training.trainer import MultiTaskTrainer  # noqa: E402


def main() -> None:
    out, overrides = Path(sys.argv[1]), sys.argv[2:]
    captured = {"tasks": []}
    original = MultiTaskTrainer.train
    run_step = StepRunner.run

    def run_and_record(self, batches, step):  # the tasks this rank trained, step by step
        result = run_step(self, batches, step)
        captured["tasks"].append([task for task, _ in result.losses])
        return result

    def train_and_capture(self):
        progress = original(self)
        model = self.accelerator.unwrap_model(self.model)
        captured["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        captured["weighting"] = {k: v.detach().clone() for k, v in self.weighting.state_dict().items()
                                 if isinstance(v, torch.Tensor)}
        return progress

    MultiTaskTrainer.train = train_and_capture
    StepRunner.run = run_and_record
    cls_ner.main([f"output_dir={out / 'run'}", *overrides])
    torch.save(captured, out / f"rank{PartialState().process_index}.pt")


if __name__ == "__main__":
    main()
