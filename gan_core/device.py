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
