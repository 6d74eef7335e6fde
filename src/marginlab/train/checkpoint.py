"""Full training state on disk, written atomically, and the random-number-generator states in it.

A checkpoint is one ``torch.save`` dictionary. It is written to a temporary sibling and renamed, so a
run killed while saving leaves the previous checkpoint intact. Together with the RNG states (Python,
NumPy, torch CPU and CUDA, and the DataLoader's shuffling generator) it lets a resumed run continue
exactly where the uninterrupted one would be (bit-identical on CPU).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from marginlab.io import atomic_path

CHECKPOINT_FORMAT = "marginlab-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or does not belong to this run."""


def capture_rng_state(loader_generator: Optional[torch.Generator] = None) -> dict[str, Any]:
    """Snapshot of every RNG the training loop draws from."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "loader": loader_generator.get_state() if loader_generator is not None else None,
    }
    return state


def restore_rng_state(state: dict[str, Any], loader_generator: Optional[torch.Generator] = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(_as_python_state(state["python"]))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if loader_generator is not None and state.get("loader") is not None:
        loader_generator.set_state(state["loader"].cpu())


def _as_python_state(s: Any) -> tuple:
    # torch.load may hand tuples back as lists; random.setstate needs (version, tuple(ints), gauss).
    version, internal, gauss = s
    return (version, tuple(internal), gauss)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus format tag) atomically to ``path``."""
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a clear error if it is not one."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # truncated file, not a torch file, ...
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); delete it to start over") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a marginlab training checkpoint (missing format tag {CHECKPOINT_FORMAT!r})")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has version {state.get('version')}, this code reads version {CHECKPOINT_VERSION}"
        )
    return state
