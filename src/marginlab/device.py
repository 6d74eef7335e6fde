"""Device selection shared by every stage ('auto' picks CUDA when present)."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested in params but CUDA is not available on this machine")
    return torch.device(name)
