"""Full training state on disk, written atomically, and the random-number-generator states in it.

A checkpoint is one ``torch.save`` dictionary. It is written to a temporary sibling and renamed, so a
run killed while saving leaves the previous checkpoint intact. Together with the RNG states (Python,
NumPy, torch CPU and CUDA, and the DataLoader's shuffling generator) it lets a resumed run continue
exactly where the uninterrupted one would be (bit-identical on CPU).

Checkpoints are DVC outputs that arrive by ``dvc pull`` from a shared remote, so they are untrusted
data: they hold only tensors, numbers, strings, bytes and plain containers, and are read with
``torch.load(..., weights_only=True)``, which refuses any other pickled object (a crafted file cannot
run code). NumPy's RNG state is therefore stored as a tensor plus numbers, not as a NumPy array.
Before a checkpoint is resumed, :func:`check_resumable` checks that its weights (current and best so
far) and optimiser state fit the run's modules: keys, shapes and dtype kinds, so that a tampered or
foreign file is refused by name instead of being cast (complex to real) or failing with a traceback.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from marginlab.core.io import RefusedFileError, torch_load_data, torch_save
from marginlab.models import (
    WeightsMismatchError,
    raise_problems,
    state_dict_problems,
    tensor_problem,
)

CHECKPOINT_FORMAT = "marginlab-checkpoint"
CHECKPOINT_VERSION = 2  # 2: weights_only-loadable (NumPy RNG state as a tensor)
#: The entries a resume reads (``Checkpointing.resume``).
RESUME_ENTRIES = ("backbone", "head", "optimizer", "scheduler", "scaler", "rng", "epoch", "global_step", "history",
                  "probe_tables", "progress_tables", "best", "wall_time_s")
_START_OVER = "it was not resumed; delete it (or train with --no-resume) to start over"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or does not belong to this run."""


def capture_rng_state(loader_generator: Optional[torch.Generator] = None) -> dict[str, Any]:
    """Snapshot of every RNG the training loop draws from."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "loader": loader_generator.get_state() if loader_generator is not None else None,
    }
    return state


def restore_rng_state(state: dict[str, Any], loader_generator: Optional[torch.Generator] = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(_as_python_state(state["python"]))
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if loader_generator is not None and state.get("loader") is not None:
        loader_generator.set_state(state["loader"].cpu())


def _numpy_state_to_plain(state: tuple) -> dict[str, Any]:
    """NumPy's legacy ``get_state()`` tuple as a tensor and plain numbers (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = state
    return {"bit_generator": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from_plain(state: dict[str, Any]) -> tuple:
    keys = state["keys"].cpu().numpy().astype(np.uint32)
    return (state["bit_generator"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"])


def _as_python_state(s: Any) -> tuple:
    # torch.load may hand tuples back as lists; random.setstate needs (version, tuple(ints), gauss).
    version, internal, gauss = s
    return (version, tuple(internal), gauss)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus format tag) atomically to ``path``."""
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    torch_save(payload, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a clear error if it is not one."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch_load_data(path, map_location=map_location)
    except RefusedFileError as err:  # never unpickled, never run
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds objects other than tensors and plain data ({err}); "
            "a file written by marginlab never does, so it may have been crafted. It was not loaded; "
            "delete it (or train with --no-resume) to start over"
        ) from None
    except Exception as err:  # truncated file, not a torch file, ...
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); delete it to start over") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a marginlab training checkpoint (missing format tag {CHECKPOINT_FORMAT!r})")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has version {state.get('version')}, this code reads version {CHECKPOINT_VERSION}"
        )
    return state


def optimizer_state_problems(optimizer: torch.optim.Optimizer, saved: Any, names: Mapping[int, str]) -> list[str]:
    """How ``saved`` (an optimiser state dict) does not fit ``optimizer``: parameter groups and their sizes, and
    each per-parameter tensor (a momentum buffer: the parameter's shape and real floating point; a 0-d
    counter: not complex). ``names`` maps ``id(parameter)`` to ``backbone.<name>`` for the messages."""
    if not isinstance(saved, Mapping) or not isinstance(saved.get("state"), Mapping) \
            or not isinstance(saved.get("param_groups"), list):
        return ["optimizer is not an optimiser state dict (state and param_groups)"]
    groups, ours = saved["param_groups"], optimizer.param_groups
    if len(groups) != len(ours):
        return [f"optimizer has {len(groups)} parameter groups, the run's optimiser has {len(ours)}"]
    params: dict[Any, torch.Tensor] = {}
    problems = []
    for i, (group, mine) in enumerate(zip(groups, ours)):
        ids = group.get("params") if isinstance(group, Mapping) else None
        if not isinstance(ids, list) or len(ids) != len(mine["params"]):
            size = len(ids) if isinstance(ids, list) else "no list of"
            problems.append(f"optimizer parameter group {i} holds {size} parameters, the run's optimiser has "
                            f"{len(mine['params'])}")
            continue
        params.update(zip(ids, mine["params"]))
    if problems:
        return problems
    for pid, entry in saved["state"].items():
        if pid not in params:
            problems.append(f"optimizer state of parameter {pid!r}, which no parameter group holds")
            continue
        param = params[pid]
        name = names.get(id(param), f"parameter {pid}")
        if not isinstance(entry, Mapping):
            problems.append(f"optimizer state of {name} is a {type(entry).__name__}, not a mapping")
            continue
        for key, value in entry.items():
            label = f"optimizer {key} of {name}"
            if not isinstance(value, torch.Tensor):
                continue  # None (no momentum yet) or a plain number
            if value.dim() == 0 and param.dim() != 0:  # a step counter
                if value.is_complex():
                    dtype = str(value.dtype).removeprefix("torch.")
                    problems.append(f"{label} has dtype {dtype}, expected a real number")
                continue
            problem = tensor_problem(label, value, param.detach())
            if problem:
                problems.append(problem)
    return problems


def check_resumable(state: dict[str, Any], path: str | Path, *, backbone: nn.Module, head: nn.Module,
                    optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has every entry a resume reads and its weights (current
    and best so far) and optimiser state fit the run's modules (:func:`marginlab.models.check_state_dict`):
    ``load_state_dict`` would cast complex values to real silently and meet a wrong shape with a traceback."""
    missing = [k for k in RESUME_ENTRIES if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}; {_START_OVER}")
    problems = state_dict_problems(backbone, state["backbone"], "backbone")
    problems += state_dict_problems(head, state["head"], "head")
    best = state["best"]
    if best is not None:
        if isinstance(best, Mapping):
            problems += state_dict_problems(backbone, best.get("backbone"), "best.backbone")
            problems += state_dict_problems(head, best.get("head"), "best.head")
        else:
            problems.append(f"best is a {type(best).__name__}, not a mapping")
    names = {id(p): f"{prefix}.{n}" for prefix, module in (("backbone", backbone), ("head", head))
             for n, p in module.named_parameters()}
    problems += optimizer_state_problems(optimizer, state["optimizer"], names)
    try:
        raise_problems(str(path), problems)
    except WeightsMismatchError as err:
        raise CheckpointError(f"checkpoint {err}; {_START_OVER}") from None
