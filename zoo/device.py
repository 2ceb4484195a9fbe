"""Devices and precision: which device a run uses and which autocast dtype, in one place.

Used by the trainer, sampling (``zoo.images``), evaluation and the models themselves.
"""
from __future__ import annotations

import contextlib

import torch

from .errors import ZooError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N`` -> a torch device."""
    name = str(name)
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ZooError(f"trainer.device={name} but CUDA is not available here (use trainer.device=cpu or auto)")
        if name == "cuda":
            return torch.device(f"cuda:{local_rank}")
        try:
            index = int(name.split(":")[1])
        except (IndexError, ValueError):
            raise ZooError(f"trainer.device={name!r} is not one of auto, cpu, cuda, cuda:N") from None
        if index >= torch.cuda.device_count():
            raise ZooError(f"trainer.device={name} but only {torch.cuda.device_count()} GPU(s) are visible")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ZooError(f"trainer.device={name!r} is not one of auto, cpu, cuda, cuda:N")


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32."""
    if name not in ("auto", "fp32", "bf16", "fp16"):
        raise ZooError(f"trainer.precision={name!r} is not one of auto, fp32, bf16, fp16")
    if device.type != "cuda" or name == "fp32":
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if name == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``; a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
