"""Running launcher subprocesses (torchrun, accelerate launch) so that a timeout ends them all."""

from __future__ import annotations

import os
import signal
import subprocess

ALL_CORES_VARIABLE = "MTL_NLP_TEST_ALL_CORES"  # set by conftest.py when it pins an xdist worker


def _use_every_core() -> None:
    """In the launched group: the machine's cores, not the pinned worker's one (its ranks share
    them out by LOCAL_WORLD_SIZE, as on a user's machine)."""
    cores = os.environ.get(ALL_CORES_VARIABLE)
    if cores:
        os.sched_setaffinity(0, {int(core) for core in cores.split(",")})


def run_process_group(command: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run in a session of its own; on timeout the whole group is killed, so no worker
    rank is left behind waiting for a peer that is gone."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, preexec_fn=_use_every_core, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
