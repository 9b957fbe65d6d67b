"""CPU facts that decide the precision and thread count for Qwen3-TTS on a CPU.

Why: every part of Qwen3-TTS decoding reads its weights once per token, so bytes per weight set the
speed.  bfloat16 halves them against float32, but only pays off where the CPU computes bf16 natively
(AVX512-BF16 or AMX on x86, the BF16 extension on Arm); elsewhere PyTorch emulates it and float32 is
faster.  The published checkpoints ship in bf16, so bf16 also loads without an upcast.

Threads: on the 2-vCPU build machine float32 matrix-vector work gained nothing from a second thread
and became very noisy (±40 %), while bf16 and int8 kernels used both cores cleanly
(see docs/benchmarks.md).  No torch import here: this module is cheap to import from the CLI.

Two process settings make CPU decoding fast and steady (:func:`prepare_cpu_process`): subnormal
floats flushed to zero, and glibc keeping freed memory for reuse.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "cpu_flags",
    "has_native_bf16",
    "resolve_cpu_dtype",
    "recommended_threads",
    "flush_denormals",
    "keep_freed_memory",
    "prepare_cpu_process",
]

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 30
_TRIM_THRESHOLD_BYTES = (1 << 31) - 1

# x86 /proc/cpuinfo "flags" and Arm "Features" entries that mean native bf16 arithmetic.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags of the first processor listed, or an empty set where unreadable."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def has_native_bf16(flags: Iterable[str] | None = None) -> bool:
    """True when the CPU advertises native bf16 arithmetic (avx512_bf16, amx_bf16 or Arm bf16)."""
    found = cpu_flags() if flags is None else frozenset(flags)
    return bool(found & _BF16_FLAGS)


def resolve_cpu_dtype(requested: str = "auto", flags: Iterable[str] | None = None) -> str:
    """Map ``--dtype`` to a torch dtype name for CPU inference.

    ``auto`` gives ``"bfloat16"`` on CPUs with native bf16 and ``"float32"`` elsewhere; explicit
    ``float32``/``bfloat16`` (aliases ``fp32``/``bf16``) pass through.  ``float16`` is refused on
    CPU by the caller, not here.
    """
    value = (requested or "auto").strip().lower()
    aliases = {
        "fp32": "float32",
        "float": "float32",
        "bf16": "bfloat16",
        "fp16": "float16",
        "half": "float16",
    }
    value = aliases.get(value, value)
    if value == "auto":
        return "bfloat16" if has_native_bf16(flags) else "float32"
    return value


def recommended_threads(dtype: str, cpu_count: int | None = None) -> int:
    """torch intra-op threads for decoding on this CPU.

    float32 on two or fewer CPUs: 1 (a second thread gave no speed and ±40 % noise here);
    everything else: all available CPUs.
    """
    cpus = (
        cpu_count
        if cpu_count is not None
        else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    )
    cpus = max(1, int(cpus))
    if dtype in ("float32", "fp32") and cpus <= 2:
        return 1
    return cpus


def flush_denormals() -> bool:
    """Compute float values below ~1.2e-38 as zero, in this thread and the threads it starts later.

    Why: x86 CPUs take a slow path on subnormal floats.  The codec's transformer ran 30x slower on
    them and its convolutions up to 4x (random-weight checkpoints, docs/benchmarks.md §6b); such
    values are far below anything audible or any logit that matters.  The setting is per thread
    (MXCSR), inherited by threads created afterwards, so call it before a thread starts torch work.
    """
    import torch

    return bool(torch.set_flush_denormal(True))


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed large blocks for reuse instead of returning them to the kernel.

    Why: a codec call allocates and frees hundreds of MB of activations.  By default glibc maps
    each large block fresh and unmaps it on free, so every call page-faults its memory back in:
    a third of the codec's time was kernel time and its duration varied 3x between identical
    calls.  The process then stays at its peak size, which a model server does anyway.  False
    where the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    )


def prepare_cpu_process() -> None:
    """The process settings for decoding on a CPU (both above); call before loading the model."""
    flush_denormals()
    keep_freed_memory()
