"""Choosing mixed precision: bf16 autocast where the hardware runs it natively, fp32 elsewhere."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX-512 BF16 or AMX), read from Linux."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = cpuinfo.read_text()
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_mixed_precision(choice: str, use_cpu: bool | None = None) -> str:
    """Turn `auto` into `bf16` (Ampere+ GPU, or a CPU with bf16 instructions) or `no`."""
    if choice != "auto":
        return choice
    on_cpu = not torch.cuda.is_available() if use_cpu is None else use_cpu
    if on_cpu:
        return "bf16" if cpu_supports_bf16() else "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "no"
