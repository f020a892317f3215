"""pyproject allows Python 3.10, where asyncio.wait_for raises asyncio.TimeoutError, a class apart
from the builtin TimeoutError (one class only from 3.11). The batching queue imports only the
standard library, so a real 3.10 interpreter, where this machine has one, runs its idle wait: the
batcher must keep answering after it (it died at its first idle wait)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

BATCHING = Path(__file__).resolve().parent.parent / "mtl_nlp" / "serving" / "batching.py"
SCENARIO = f"""
import asyncio, importlib.util, sys
assert sys.version_info[:2] == (3, 10), sys.version
spec = importlib.util.spec_from_file_location("batching", {str(BATCHING)!r})
batching = importlib.util.module_from_spec(spec)
sys.modules["batching"] = batching
spec.loader.exec_module(batching)
calls = []

def predict(inputs, tasks):
    calls.append(list(inputs))
    return [{{}} for _ in inputs]

async def scenario():
    batcher = batching.DynamicBatcher(predict, lambda inputs, tasks: len(inputs), 100, max_wait_ms=20,
                                      max_queue=16)
    batcher.start()
    for text in ("a", "b"):  # each waits 20 ms for company that never comes
        answer = asyncio.ensure_future(batcher.submit([text], None))
        done, _ = await asyncio.wait({{answer}}, timeout=5)
        assert done, "the batcher stopped answering"
    await batcher.drain()

asyncio.run(scenario())
print(calls)
"""


def find_python310() -> str | None:
    """A Python 3.10 interpreter that runs (pyenv's shim of an uninstalled version does not)."""
    candidates = sorted(str(path) for path in Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))
    candidates += [found for found in [shutil.which("python3.10")] if found]
    for candidate in candidates:
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                               capture_output=True, text=True)
        if probe.stdout.strip() == "True":
            return candidate
    return None


def test_the_batcher_keeps_answering_after_an_idle_wait_on_python_310():
    python310 = find_python310()
    if python310 is None:
        pytest.skip("no python3.10 on this machine (tests/test_serving.py covers the path by imitation)")
    result = subprocess.run([python310, "-c", SCENARIO], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[['a'], ['b']]"
