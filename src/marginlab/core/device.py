"""Device selection shared by every stage ('auto' picks CUDA when present), and the CPU cores this process may use."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a device is resolved: reading cores must not cost its import
    import torch


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; every core where the OS does not say)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def resolve_device(name: str = "auto") -> "torch.device":
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested in params but CUDA is not available on this machine")
    return torch.device(name)
