"""Fully sharded training (FSDP2): a real 2-process run on gloo from the shipped Accelerate config
trains like DDP and saves a whole checkpoint; settings that need whole gradients are refused."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from process_group import run_process_group

from mtl_nlp import MultiTaskModel
from mtl_nlp.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
FSDP_CONFIG = ROOT / "recipes" / "accelerate" / "fsdp.yaml"
ENV = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def torchrun(worker: str, *args: str):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               str(ROOT / "tests" / "workers" / worker), *args]
    result = run_process_group(command, env=ENV, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# The one_task runs save states every 2 steps (eval_every=2, two kept), so the resume test below
# continues the same FSDP run instead of training another.
ONE_TASK = ("train.eval_every=2", "train.save_total_limit=2")


def fsdp_and_ddp(model_dir: Path, folder: Path, overrides: tuple[str, ...]) -> Path:
    """The same 4 steps trained under FSDP (folder/fsdp) and DDP (folder/ddp), 2 processes each."""
    common = (f"model={model_dir}", "mixed_precision=no", "train.batch_size=16", "train.lr=1e-3",
              "train.max_steps=4", *overrides)
    torchrun("fsdp_train.py", str(FSDP_CONFIG), str(folder / "fsdp"), f"cache_dir={folder / 'c1'}", *common)
    torchrun("ddp_train.py", str(folder / "ddp"), f"cache_dir={folder / 'c2'}", *common)
    return folder


@pytest.fixture(scope="module")
def one_task_runs(tiny_model_dir, tmp_path_factory) -> Path:
    return fsdp_and_ddp(tiny_model_dir, tmp_path_factory.mktemp("one-task"), ONE_TASK)


@pytest.mark.parametrize("overrides", [
    ONE_TASK,
    # two more launches (about 45 s on 2 cores): with -m slow
    pytest.param(("tasks=[{name: demo_ner, layer: 1}, demo_sentiment]", "sharing.private_layers=1",
                  "train.step_mode=all_tasks", "train.grad_accum=2", "weighting.method=dwa",
                  "weighting.window=2"), marks=pytest.mark.slow),
], ids=["one_task", "all_tasks-accum-private-layer-1"])
def test_fsdp_trains_like_ddp_and_saves_whole_weights(tiny_model_dir, tmp_path, overrides, request):
    runs = (request.getfixturevalue("one_task_runs") if overrides == ONE_TASK
            else fsdp_and_ddp(tiny_model_dir, tmp_path, overrides))
    ranks = [json.loads((runs / "fsdp" / f"rank{rank}.json").read_text())["steps"] for rank in (0, 1)]
    tasks = [[task for task, _ in step] for step in ranks[0]]
    assert len(tasks) == 4 and tasks == [[task for task, _ in step] for step in ranks[1]]
    assert tasks == torch.load(runs / "ddp" / "rank0.pt")["tasks"]  # the same mix as DDP
    # The checkpoint holds whole weights, gathered from the shards: on 2 processes exactly DDP's
    # (reduce-scatter and all-reduce add the same two gradients).
    sharded = MultiTaskModel.from_pretrained(runs / "fsdp" / "run").state_dict()
    replicated = MultiTaskModel.from_pretrained(runs / "ddp" / "run").state_dict()
    assert sharded.keys() == replicated.keys()
    for name, value in replicated.items():
        assert torch.equal(sharded[name], value), name
    initial = MultiTaskModel.from_encoder(str(tiny_model_dir), []).encoder.state_dict()
    assert not torch.equal(initial["embeddings.word_embeddings.weight"],
                           sharded["encoder.embeddings.word_embeddings.weight"])  # it trained
    fsdp_metrics = json.loads((runs / "fsdp" / "run" / "metrics.json").read_text())
    ddp_metrics = json.loads((runs / "ddp" / "run" / "metrics.json").read_text())
    assert fsdp_metrics == ddp_metrics
    state = runs / "fsdp" / "run" / "state"
    assert any(path.name.startswith("pytorch_model_fsdp") for path in state.iterdir())  # sharded state


def test_fsdp_resumes_exactly_from_a_sharded_state(one_task_runs, tiny_model_dir, tmp_path):
    straight_run = one_task_runs / "fsdp"  # 4 steps, a state saved at step 2
    assert (straight_run / "run" / "state-2").is_dir()
    torchrun("fsdp_train.py", str(FSDP_CONFIG), str(tmp_path / "resumed"), f"model={tiny_model_dir}",
             "mixed_precision=no", "train.batch_size=16", "train.lr=1e-3", "train.max_steps=4", *ONE_TASK,
             f"cache_dir={tmp_path / 'c2'}", f"resume_from={straight_run / 'run' / 'state-2'}")
    straight = json.loads((straight_run / "rank0.json").read_text())["steps"]
    resumed = json.loads((tmp_path / "resumed" / "rank0.json").read_text())["steps"]
    assert len(straight) == 4 and resumed == straight[2:]  # same tasks, batches, dropout and losses
    histories = [json.loads((run / "run" / "trainer_state.json").read_text())["history"]
                 for run in (straight_run, tmp_path / "resumed")]
    scores = [{k: v for k, v in entry.items() if not k.startswith("eval_")} for entry in histories[1]]
    assert scores[-1]["step"] == 4
    assert scores[-1] == {k: v for k, v in histories[0][-1].items() if not k.startswith("eval_")}
    final = MultiTaskModel.from_pretrained(tmp_path / "resumed" / "run").state_dict()
    for name, value in MultiTaskModel.from_pretrained(straight_run / "run").state_dict().items():
        assert torch.equal(final[name], value), name


@pytest.mark.parametrize("fused", [True, False])
def test_filling_missing_optimizer_state_changes_no_update(fused):
    from mtl_nlp.training.sharded import fill_missing_optimizer_state

    def train(fill: bool) -> list[torch.Tensor]:
        used, idle = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.full((2,), 2.0))
        optimizer = torch.optim.AdamW([used, idle], lr=0.1, weight_decay=0.1, fused=fused)
        used.grad = torch.tensor([1.0, -2.0, 3.0])
        optimizer.step()  # `idle` has no gradient: no state, no update
        if fill:
            used.grad = torch.tensor([7.0, 7.0, 7.0])  # a gradient the filling must leave alone
            fill_missing_optimizer_state(optimizer)
            assert torch.equal(used.grad, torch.tensor([7.0, 7.0, 7.0]))
            state = optimizer.state[idle]
            assert float(state["step"]) == 0.0
            assert not state["exp_avg"].any() and not state["exp_avg_sq"].any()
            assert optimizer.param_groups[0]["lr"] == 0.1
        assert torch.equal(idle.detach(), torch.full((2,), 2.0))
        used.grad, idle.grad = torch.tensor([0.5, 0.5, -1.0]), torch.tensor([0.5, -1.0])
        optimizer.step()
        return [used.detach().clone(), idle.detach().clone()]

    unfilled, filled = train(fill=False), train(fill=True)
    assert all(torch.equal(a, b) for a, b in zip(unfilled, filled))


class StandIn:
    """Accelerate starts FSDP and DeepSpeed on GPUs only: an Accelerator reporting them stands in."""

    @staticmethod
    def accelerator(monkeypatch, kind: str, fsdp2: bool = True):
        from accelerate import Accelerator
        from accelerate.utils import DistributedType

        from mtl_nlp.training import setup

        class Reporting(Accelerator):
            distributed_type = property(lambda self: DistributedType(kind))
            is_fsdp2 = property(lambda self: fsdp2)

        monkeypatch.setattr(setup, "Accelerator", Reporting)
        return setup


@pytest.mark.parametrize("overrides, named", [
    (["weighting.method=pcgrad", "train.step_mode=all_tasks"], "weighting.method=pcgrad"),
    (["weighting.method=cagrad", "train.step_mode=all_tasks"], "weighting.method=cagrad"),
    (["weighting.method=uncertainty"], "weighting.method=uncertainty"),
    (["diagnostics.conflict_every=5"], "diagnostics.conflict_every"),
    (["sharing.private_layers=1", "sharing.soft_l2=0.1"], "sharing.soft_l2"),
    (["train.grad_norm_mode=normalize"], "train.grad_norm_mode=normalize"),
    (["sharing.adapters.method=lora"], "sharing.adapters"),
])
def test_fsdp_refuses_settings_that_need_whole_gradients(monkeypatch, tmp_path, overrides, named):
    setup = StandIn.accelerator(monkeypatch, "FSDP")
    config = load_config(overrides=[f"output_dir={tmp_path}", "mixed_precision=no", *overrides])
    with pytest.raises(ConfigError, match=rf"under FSDP these settings cannot train: {named} .* with DDP"):
        setup.build_accelerator(config)


def test_fsdp_with_loss_level_settings_starts(monkeypatch, tmp_path):
    setup = StandIn.accelerator(monkeypatch, "FSDP")
    config = load_config(overrides=[f"output_dir={tmp_path}", "mixed_precision=no", "weighting.method=dwa",
                                    "train.step_mode=all_tasks", "sharing.private_layers=1"])
    assert setup.build_accelerator(config) is not None


def test_fsdp_version_1_and_deepspeed_are_refused_naming_the_config_to_use(monkeypatch, tmp_path):
    config = load_config(overrides=[f"output_dir={tmp_path}", "mixed_precision=no"])
    setup = StandIn.accelerator(monkeypatch, "FSDP", fsdp2=False)
    with pytest.raises(ConfigError, match=r"FSDP version 1 is not supported: set fsdp_version: 2 .*"
                                          r"recipes/accelerate/fsdp.yaml"):
        setup.build_accelerator(config)
    setup = StandIn.accelerator(monkeypatch, "DEEPSPEED")
    with pytest.raises(ConfigError, match=r"set up for DEEPSPEED, which mtl_nlp does not support .*"
                                          r"--config_file recipes/accelerate/fsdp.yaml\) or DDP"):
        setup.build_accelerator(config)
