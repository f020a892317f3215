import pytest
import torch

from mtl_nlp.common import precision
from mtl_nlp.common.precision import cpuinfo_has_bf16, resolve_mixed_precision

CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n\n"


@pytest.mark.parametrize(("extra", "expected"), [("avx512_bf16", True), ("amx_bf16 amx_tile", True),
                                                 ("avx512vnni", False), ("", False)])
def test_cpuinfo_flags_decide_native_bf16(extra, expected):
    assert cpuinfo_has_bf16(CPUINFO.format(extra=extra)) is expected


def test_a_model_name_mentioning_bf16_is_not_a_flag():
    assert cpuinfo_has_bf16("model name\t: avx512_bf16 lookalike\nflags\t\t: fpu avx2\n") is False


@pytest.mark.parametrize("choice", ["no", "bf16", "fp16"])
def test_an_explicit_choice_is_kept(choice):
    assert resolve_mixed_precision(choice, use_cpu=True) == choice


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "no")])
def test_auto_on_cpu_follows_the_cpu_flags(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: native)
    assert resolve_mixed_precision("auto", use_cpu=True) == expected


@pytest.mark.parametrize(("ampere", "expected"), [(True, "bf16"), (False, "no")])
def test_auto_on_gpu_counts_only_native_bf16(monkeypatch, ampere, expected):
    # A pre-Ampere GPU reports bf16 support only when emulation is included.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: ampere or including_emulation)
    assert resolve_mixed_precision("auto", use_cpu=False) == expected
