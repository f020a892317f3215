"""The machine a timing was taken on, printed with every timing table: speed-ups between
precisions depend on the CPU (native bf16 instructions or not), so a figure means little
without it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

# CPU flags that make bf16 matmuls native (AVX-512 BF16, Intel AMX tiles).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_model_and_flags(cpuinfo: str) -> tuple[str, set[str]]:
    """The model name and the flags of the first processor in /proc/cpuinfo's text."""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def describe_machine() -> str:
    """"cpu: MODEL (bf16: avx512_bf16, amx_bf16), torch threads: N, cores: M[, gpu: NAME]"."""
    cpuinfo = Path("/proc/cpuinfo")
    model, flags = cpu_model_and_flags(cpuinfo.read_text()) if cpuinfo.is_file() else ("", set())
    native = [flag for flag in BF16_FLAGS if flag in flags]
    bf16 = f"bf16: {', '.join(native)}" if native else ("no native bf16" if flags else "bf16 unknown")
    text = (f"cpu: {model or platform.processor() or platform.machine()} ({bf16}), "
            f"torch threads: {torch.get_num_threads()}, cores: {os.cpu_count()}")
    if torch.cuda.is_available():
        text += f", gpu: {torch.cuda.get_device_name()}"
    return text
