"""Device and precision choice: cuda, then mps, then cpu; bf16 autocast only on CUDA."""

from __future__ import annotations

import contextlib

import torch


def choose_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: {requested!r} was asked for but CUDA is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_for(device: torch.device, precision: str = "auto"):
    """bf16 autocast on CUDA when precision is auto or bf16; full precision elsewhere."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision: expected 'auto', 'bf16' or 'fp32', got {precision!r}")
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_allocator_tuned = False


def keep_freed_cpu_memory(limit_bytes: int = 64 << 20) -> bool:
    """Let this process keep up to `limit_bytes` of freed heap instead of handing it back to the kernel.

    On CPU, torch frees and reallocates the same few MB of activations every batch. glibc gives
    blocks over 128 KB (and a heap top over 128 KB) back to the kernel, so every batch page-faults
    them in again, zero-filled: a third of the sampling time of the quick model (6,000 → 8,600
    images/s on 2 cores, benchmarks/export_speed.py). Process-wide and idempotent; on a libc
    without `mallopt` it does nothing and returns False."""
    global _allocator_tuned
    if _allocator_tuned:
        return True
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # Blocks up to half the limit come from the heap; freed heap is trimmed only beyond the limit.
    _allocator_tuned = bool(mallopt(_M_MMAP_THRESHOLD, limit_bytes // 2)) and bool(mallopt(_M_TRIM_THRESHOLD, limit_bytes))
    return _allocator_tuned
