"""Mixed precision: the dtype forward passes run in, chosen by name.

One setting, ``precision``, for fine-tuning, probing, feature extraction (probes and CKA) and
pretraining:

| precision | on a CUDA GPU                                   | on a CPU                          |
|-----------|-------------------------------------------------|-----------------------------------|
| fp32      | float32 throughout (no autocast)                | the same                          |
| bf16      | autocast to bfloat16                            | autocast to bfloat16              |
| fp16      | autocast to float16, loss scaled (GradScaler)   | refused (no fast fp16 on CPUs)    |
| auto      | bf16 where ``torch.cuda.is_bf16_supported()``,  | bf16 with native bf16 (avx512_bf16|
|           | else fp16                                       | or amx_bf16), else fp32 (below)   |

Autocast runs the matrix products (linear layers, attention) in the low-precision dtype and
keeps the rest where PyTorch's autocast lists put it; the weights, their gradients and the
optimizer's state stay float32 (the model is never cast with ``model.to(bfloat16)``). What sums
over many terms stays float32 in the callers: losses are taken on ``logits.float()``, features
are pooled and stored as float32 (CKA's sums run over them), and metrics are computed from
float32 values. With fp32 nothing changes: no autocast context, no scaler, so a seed gives the
numbers it gave before this setting existed.

``auto`` on a CPU depends on its instruction sets (``mtnb.core.machine.auto_cpu_precision``):
bf16 where /proc/cpuinfo lists avx512_bf16 or amx_bf16 (native bf16 dot products), fp32 where it
does not. Both choices rest on ``benchmarks/bench_precision.py`` (fp32 against bf16 on the same
batches, in one run, medians of the repeats, torch on 2 threads with OMP_WAIT_POLICY=PASSIVE),
taken on two 2-core machines of this project's kind; the bars were issue 16's (features >= 1.8x,
a fine-tuning step >= 1.3x) and issue 30's (same-seed score differences at most a tenth of the
fp32 seeds' spread).

With native bf16 (AVX512-BF16 and AMX-BF16; ``bench_precision.py --repeats 3`` at 1e7a515,
issue 30):

- multilingual-e5-small's feature extraction, 64 mini-topic paragraphs: bf16 1.92x as fast as
  fp32 (bar 1.8x: met);
- a fine-tuning step of e5-small (all weights trained; 16 paragraphs): 1.33x (bar 1.3x: met);
  the losses of the same batches at most 0.88% apart;
- a linear probe's zero-shot mini-topic accuracy outside English, seeds 0, 1, 2: 48.0, 39.1 and
  46.9 with bf16 features against 48.0, 39.5 and 46.9 with fp32 ones: same-seed differences
  0.0, -0.39 and 0.0 points against a spread of the fp32 seeds of 8.5 points (the largest is
  0.05 of the spread; bar 0.1: met).

Measured again this session on the same kind of machine, quiet (``bench_precision.py
--repeats 2``, 2 threads): features 2.30x to 2.91x; a fine-tuning step 1.91x with AdamW's fused
kernel at bf16, as ``ft.train`` runs it (1.26x with the per-tensor loop it used before); the
losses at most 1.20% apart; zero-shot same-seed differences 0.39, 0.0 and 0.78 points against an
fp32 spread of 10.16 (0.077 of it; bar 0.1: met).

Without it (an AMD EPYC whose flags stop at AVX2; ``torch.backends.cpu.get_cpu_capability()``:
AVX2), oneDNN emulates bf16 and its matrix products run slower than float32's (one of
2,048 x 384 by 384 x 1,536 took 9x as long):

- feature extraction, the same 64 paragraphs (1,863 tokens): fp32 1.97 s, bf16 12.11 s: 0.16x;
  last layer's features 0.34% apart;
- a fine-tuning step: fp32 3.6 s, bf16 31.2 s: 0.12x; losses 0.9% apart at most;
- the probe's scores, seeds 0, 1, 2: 46.5, 39.5 and 44.9 with either features.

So bf16 keeps the scores on both machines and pays only where the CPU has the instructions.
A run records the precision it resolved to (``precision_name``; run.json's ``precision``) and
the feature cache keys on it, so bf16 and fp32 results never mix unmarked. On a GPU ``auto`` is
bf16 (fp16 where the GPU lacks bf16), the usual choice for Transformer training and inference
there; ``bench_precision.py`` measures it where a GPU is present (none was lent for these
figures).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from mtnb.core.errors import MtnbError
from mtnb.core.machine import auto_cpu_precision

PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def check_precision(name) -> str:
    """``name`` when it is one of PRECISIONS; a one-line MtnbError otherwise (cheap: imports
    no torch, so callers check before any heavy work)."""
    if name not in PRECISIONS:
        raise MtnbError(f"unknown precision {name!r}: use one of {', '.join(PRECISIONS)}")
    return name


def default_device() -> str:
    """Where forward passes run unless told otherwise: 'cuda' when torch sees a GPU, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _device_type(device) -> str:
    """'cuda' or 'cpu' (or another backend's name) of a torch.device or a string like 'cuda:0'."""
    return getattr(device, "type", None) or str(device).split(":")[0]


def resolve_precision(name: str, device, cpuinfo: str | Path | None = None):
    """The autocast dtype of precision ``name`` on ``device`` (a torch.device or 'cpu',
    'cuda', 'cuda:1', ...): None for fp32 (no autocast), torch.bfloat16 or torch.float16.
    ``auto`` on a CPU reads the CPU's flags from ``cpuinfo`` (None: ``mtnb.core.machine.CPUINFO``,
    /proc/cpuinfo): bf16 with native bf16, fp32 without (``machine.auto_cpu_precision``).
    MtnbError for an unknown name, for fp16 on a CPU, and for bf16 on a GPU without bf16."""
    check_precision(name)
    kind = _device_type(device)
    if name == "auto":
        if kind == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = auto_cpu_precision(cpuinfo)
    if name == "fp16" and kind != "cuda":
        raise MtnbError(f"precision fp16 needs a CUDA GPU (this run is on {kind}): use bf16, fp32 or auto")
    if name == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise MtnbError(f"this GPU ({torch.cuda.get_device_name(device)}) has no bf16: use fp16, fp32 or auto")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def precision_name(dtype) -> str:
    """The name of a resolved precision: 'fp32' for None, 'bf16' or 'fp16' (for records and
    cache keys)."""
    names = {None: "fp32", torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    if dtype not in names:
        raise MtnbError(f"no precision runs in {dtype}: resolve a name with resolve_precision")
    return names[dtype]


def autocast(dtype, device):
    """The context for forward passes at ``dtype`` (from ``resolve_precision``) on ``device``:
    ``torch.autocast`` for bf16 and fp16, nothing at all for fp32 (None), so fp32 runs the code
    it ran before."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(_device_type(device), dtype=dtype)


def grad_scaler(dtype, device):
    """A ``torch.amp.GradScaler`` for fp16 (its gradients underflow without loss scaling),
    None otherwise (bf16 has float32's exponent range and needs none)."""
    if dtype is not torch.float16:
        return None
    return torch.amp.GradScaler(_device_type(device))


def recorded_precision(name: str, device) -> str:
    """The precision to evaluate a finished run with on ``device``: the one it was trained at
    (``name``, as its run.json records it), or fp32 where ``device`` cannot run that (fp16 on a
    CPU, bf16 on a GPU without it; the weights are float32 either way)."""
    kind = _device_type(device)
    without_bf16 = kind == "cuda" and not torch.cuda.is_bf16_supported()
    if (name == "fp16" and kind != "cuda") or (name == "bf16" and without_bf16):
        return "fp32"
    return check_precision(name)
