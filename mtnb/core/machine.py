"""The machine a run or a benchmark ran on, read without importing torch.

Linux's ``/proc/cpuinfo`` names the CPU and its instruction sets ("flags"). Two of them decide
whether bfloat16 pays on a CPU: ``avx512_bf16`` (AVX512-BF16: bf16 dot products) and
``amx_bf16`` (AMX tiles of bf16). Without either, oneDNN emulates bf16 through float32 and a
bf16 matrix product runs several times slower than a float32 one (``mtnb.core.precision``
gives the figures), so precision ``auto`` means bf16 on a CPU with one of them and fp32 on a CPU
without (``auto_cpu_precision``). Benchmarks record ``machine_summary`` beside every figure, so a
speed-up is always read with the flags that produced it.

Everything here reads files only: no torch, so a command can check its inputs (and the book can
describe the machine) before any heavy import.
"""

from __future__ import annotations

import glob
import os
import platform
from pathlib import Path

CPUINFO = "/proc/cpuinfo"
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
NVIDIA_GPUS = "/proc/driver/nvidia/gpus/*/information"


def _read(path) -> str:
    """The text of the file at ``path`` ('' when it cannot be read); None means CPUINFO, read
    when called, so a test can point every function here at a fake file by setting CPUINFO."""
    try:
        return Path(CPUINFO if path is None else path).read_text(errors="replace")
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | Path | None = None) -> frozenset[str]:
    """The instruction-set flags of the CPU: the union of every ``flags`` line of ``cpuinfo``
    (one per logical core; None: CPUINFO); empty when the file cannot be read (not Linux, no permission)."""
    flags: set[str] = set()
    for line in _read(cpuinfo).splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return frozenset(flags)


def cpu_has_native_bf16(cpuinfo: str | Path | None = None) -> bool:
    """True when the CPU's flags include a native bf16 instruction set (NATIVE_BF16_FLAGS:
    avx512_bf16 or amx_bf16); False when they do not or ``cpuinfo`` cannot be read."""
    return any(flag in cpu_flags(cpuinfo) for flag in NATIVE_BF16_FLAGS)


def cpu_model(cpuinfo: str | Path | None = None) -> str:
    """The CPU's name: the first ``model name`` line of ``cpuinfo``, else
    ``platform.processor()``, else 'unknown CPU'."""
    for line in _read(cpuinfo).splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


def auto_cpu_precision(cpuinfo: str | Path | None = None) -> str:
    """What precision ``auto`` means on this CPU: 'bf16' where it has native bf16
    (``cpu_has_native_bf16``), 'fp32' otherwise."""
    return "bf16" if cpu_has_native_bf16(cpuinfo) else "fp32"


def gpu_names(pattern: str = NVIDIA_GPUS) -> list[str]:
    """The NVIDIA GPUs the driver lists (the ``Model:`` line of each ``information`` file
    matching ``pattern``), without importing torch or CUDA; [] where there are none."""
    names = []
    for path in sorted(glob.glob(pattern)):
        for line in _read(path).splitlines():
            if line.startswith("Model:"):
                names.append(line.partition(":")[2].strip())
    return names


def machine_summary(cpuinfo: str | Path | None = None, gpus: str = NVIDIA_GPUS) -> dict:
    """The machine in a few fields, for benchmark JSON and the book:

    ``cpu`` (model name), ``cores`` (logical cores, ``os.cpu_count()``), ``flags`` ({flag: present}
    for FLAGS_THAT_MATTER), ``native_bf16``, ``auto_cpu_precision``, ``gpus`` (names, [] for none)
    and ``text``, one line such as "Intel(R) Xeon(R) Processor, 2 cores, flags: avx2 avx512f
    avx512_bf16 amx_bf16 amx_tile" (", GPU: ..." appended where one is visible)."""
    flags = cpu_flags(cpuinfo)
    present = {flag: flag in flags for flag in FLAGS_THAT_MATTER}
    cores = os.cpu_count() or 1
    shown = " ".join(flag for flag, on in present.items() if on) or "none of " + " ".join(FLAGS_THAT_MATTER)
    if not flags:
        shown = "not readable"
    text = f"{cpu_model(cpuinfo)}, {cores} core{'s' if cores != 1 else ''}, flags: {shown}"
    found = gpu_names(gpus)
    if found:
        text += ", GPU: " + ", ".join(found)
    return {"cpu": cpu_model(cpuinfo), "cores": cores, "flags": present,
            "native_bf16": cpu_has_native_bf16(cpuinfo), "auto_cpu_precision": auto_cpu_precision(cpuinfo),
            "gpus": found, "text": text}
