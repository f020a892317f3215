"""Choosing mixed precision: bf16 autocast where the hardware runs it natively, fp32 elsewhere."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpuinfo_has_bf16(cpuinfo: str) -> bool:
    """True when a /proc/cpuinfo text lists native bf16 instructions (AVX-512 BF16 or AMX)."""
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split()}
    return any(flag in flags for flag in BF16_CPU_FLAGS)


@cache
def cpu_supports_bf16() -> bool:
    """True when this machine's CPU has native bf16 instructions (read from Linux's /proc)."""
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.is_file() and cpuinfo_has_bf16(cpuinfo.read_text())


def resolve_mixed_precision(choice: str, use_cpu: bool | None = None) -> str:
    """Turn `auto` into `bf16` (Ampere+ GPU, or a CPU with bf16 instructions) or `no`."""
    if choice != "auto":
        return choice
    on_cpu = not torch.cuda.is_available() if use_cpu is None else use_cpu
    if on_cpu:
        return "bf16" if cpu_supports_bf16() else "no"
    # Older GPUs only emulate bf16, which is slower than fp32: count native support only.
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.3 has no emulation flag and reports native support only
        native = torch.cuda.is_bf16_supported()
    return "bf16" if native else "no"


def describe_precision(choice: str, resolved: str, use_cpu: bool) -> str:
    """One line saying which precision a run uses and why, for the start of its log."""
    name = {"bf16": "bf16 autocast", "fp16": "fp16 autocast", "no": "fp32"}[resolved]
    if choice != "auto":
        return f"precision: {name} (mixed_precision={choice} in the config)"
    device = "CPU" if use_cpu else "GPU"
    if resolved == "no":
        return (f"precision: fp32 (mixed_precision=auto: this {device} has no native bf16, "
                "and emulated bf16 is slower than fp32)")
    return f"precision: {name} (mixed_precision=auto: this {device} runs bf16 natively)"
