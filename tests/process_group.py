"""Running launcher subprocesses (torchrun, accelerate launch) so that a timeout ends them all."""

from __future__ import annotations

import os
import signal
import subprocess


def run_process_group(command: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run in a session of its own; on timeout the whole group is killed, so no worker
    rank is left behind waiting for a peer that is gone."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
