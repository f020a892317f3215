"""Pre-emption and Ctrl-C: SIGTERM or SIGINT during training asks the loop to stop after the
current step, save a resumable state and exit, instead of dying mid-step with nothing saved."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import torch
from accelerate import Accelerator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(SystemExit):
    """Raised after the state is saved; exits with 128 + the signal number, as the signal would."""


class StopRequests:
    """Records SIGTERM/SIGINT while installed (a second SIGINT interrupts at once, as usual)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._record)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _record(self, number: int, frame: FrameType | None) -> None:
        if self.signal == signal.SIGINT and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = number

    def agreed(self, accelerator: Accelerator, sync_point: bool) -> int | None:
        """The signal to stop for now, or None. One process answers from its own record at
        every step; several processes compare records only at `sync_point` steps (one small
        all-gather there, not a device sync every step), so that all of them stop at the same
        step."""
        if accelerator.num_processes == 1:
            return self.signal
        if not sync_point:
            return None
        flag = torch.tensor([self.signal or 0], device=accelerator.device)
        return int(accelerator.gather(flag).max().item()) or None
