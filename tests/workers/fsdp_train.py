"""Train the recipe under torchrun with FSDP2 on the CPU (gloo), from an Accelerate config file.

    torchrun --nproc_per_node 2 tests/workers/fsdp_train.py ACCELERATE_CONFIG OUT_DIR key=value ...

Accelerate starts FSDP on GPUs only. This worker turns the config file into the environment
`accelerate launch --config_file` would set (the FSDP_* variables its plugin reads), and has the
Accelerator the recipe builds report FSDP with that plugin, so the whole run (sharded model and
optimizer, gathered checkpoints, sharded training states) runs for real on gloo. The recipe writes
OUT_DIR/run; each rank also writes OUT_DIR/rank{N}.json with the (task, loss) pairs of each step.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))

import cls_ner  # noqa: E402
from accelerate import Accelerator, FullyShardedDataParallelPlugin, PartialState  # noqa: E402
from accelerate.commands.launch import _validate_launch_command, launch_command_parser  # noqa: E402
from accelerate.utils import DistributedType  # noqa: E402
from accelerate.utils.launch import prepare_multi_gpu_env  # noqa: E402

from mtl_nlp.training import setup  # noqa: E402
from mtl_nlp.training.step import StepRunner  # noqa: E402


def fsdp_environment(config_file: str) -> dict[str, str]:
    """The FSDP_* variables `accelerate launch --config_file config_file` sets."""
    args = launch_command_parser().parse_args(["--config_file", config_file, "script.py"])
    args, _, _ = _validate_launch_command(args)
    return {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith("FSDP_")}


class FsdpOnCpu(Accelerator):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* environment
        if self.state.mixed_precision != "no":
            plugin.set_mixed_precision(self.state.mixed_precision)
        self.state.fsdp_plugin = plugin
        # Both shared states: every later AcceleratorState() copies PartialState's over its own.
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.state.distributed_type = DistributedType.FSDP


def main() -> None:
    config_file, out, overrides = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    os.environ.update(fsdp_environment(config_file))
    setup.Accelerator = FsdpOnCpu
    steps = []
    run_step = StepRunner.run

    def run_and_record(self, batches, step):
        result = run_step(self, batches, step)
        steps.append([(task, float(loss)) for task, loss in result.losses])
        return result

    StepRunner.run = run_and_record
    cls_ner.main([f"output_dir={out / 'run'}", *overrides])
    rank = PartialState().process_index
    (out / f"rank{rank}.json").write_text(json.dumps({"steps": steps}))


if __name__ == "__main__":
    main()
