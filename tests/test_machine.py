"""The machine, read from fake cpuinfo files: flags, native bf16, what ``auto`` means on a CPU,
the summary benchmarks record, and no torch imported for any of it."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mtnb.core.machine as machine
from mtnb.core.machine import (auto_cpu_precision, cpu_flags, cpu_has_native_bf16, cpu_model, gpu_names,
                               machine_summary)

AVX2_ONLY = ("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma\n\n"
             "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma\n")
NATIVE = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
          "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")


@pytest.fixture
def cpus(tmp_path):
    (tmp_path / "avx2").write_text(AVX2_ONLY)
    (tmp_path / "native").write_text(NATIVE)
    (tmp_path / "amx").write_text("flags\t\t: fpu avx2 amx_bf16 amx_tile\n")
    return tmp_path


def test_flags_and_native_bf16_are_read_from_cpuinfo(cpus):
    assert cpu_flags(cpus / "avx2") == {"fpu", "sse2", "avx2", "fma"}
    assert {"avx512_bf16", "amx_bf16"} <= cpu_flags(cpus / "native")
    assert cpu_flags(cpus / "missing") == frozenset()
    assert not cpu_has_native_bf16(cpus / "avx2") and not cpu_has_native_bf16(cpus / "missing")
    assert cpu_has_native_bf16(cpus / "native") and cpu_has_native_bf16(cpus / "amx")
    assert cpu_model(cpus / "avx2") == "AMD EPYC 7B13"
    assert cpu_model(cpus / "amx")       # no model name line: platform's answer or 'unknown CPU'


def test_auto_is_bf16_only_with_native_bf16(cpus, monkeypatch):
    assert auto_cpu_precision(cpus / "avx2") == "fp32"
    assert auto_cpu_precision(cpus / "native") == "bf16"
    assert auto_cpu_precision(cpus / "amx") == "bf16"
    assert auto_cpu_precision(cpus / "missing") == "fp32"
    # CPUINFO is read when called: pointing it at a fake file moves every default
    monkeypatch.setattr(machine, "CPUINFO", str(cpus / "native"))
    assert auto_cpu_precision() == "bf16" and cpu_model() == "Intel(R) Xeon(R) Processor"
    monkeypatch.setattr(machine, "CPUINFO", str(cpus / "avx2"))
    assert auto_cpu_precision() == "fp32" and not cpu_has_native_bf16()


def test_the_summary_names_the_cpu_its_cores_and_flags(cpus, tmp_path):
    gpu = tmp_path / "gpus" / "0000:01:00.0"
    gpu.mkdir(parents=True)
    (gpu / "information").write_text("Model: \t\t NVIDIA H100 80GB HBM3\nIRQ: 10\n")
    pattern = str(tmp_path / "gpus" / "*" / "information")
    assert gpu_names(pattern) == ["NVIDIA H100 80GB HBM3"]
    assert gpu_names(str(tmp_path / "none" / "*")) == []

    plain = machine_summary(cpus / "avx2", gpus=str(tmp_path / "none" / "*"))
    assert plain["flags"] == {"avx2": True, "avx512f": False, "avx512_bf16": False, "amx_bf16": False,
                              "amx_tile": False}
    assert plain["native_bf16"] is False and plain["auto_cpu_precision"] == "fp32" and plain["gpus"] == []
    assert plain["text"].startswith("AMD EPYC 7B13, ") and plain["text"].endswith("flags: avx2")

    native = machine_summary(cpus / "native", gpus=pattern)
    assert native["auto_cpu_precision"] == "bf16" and all(native["flags"].values())
    assert native["text"].endswith("flags: avx2 avx512f avx512_bf16 amx_bf16 amx_tile, GPU: NVIDIA H100 80GB HBM3")
    assert "not readable" in machine_summary(cpus / "missing")["text"]


def test_the_machine_module_imports_no_torch():
    code = "import mtnb.core.machine, sys; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_performance_page_shows_the_flags_beside_a_benchmark(cpus):
    from mtnb.study.book.performance import benchmark_machine

    summary = machine_summary(cpus / "native")
    line = benchmark_machine({"headline": {"speedup": 1.9}, "machine_summary": summary})
    assert "Intel(R) Xeon(R) Processor" in line and "avx512_bf16 amx_bf16" in line
    assert "flags not recorded" in benchmark_machine({"headline": {"speedup": 1.9}, "machine": "x86_64"})
