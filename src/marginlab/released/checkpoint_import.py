"""What the checkpoint importers (``adaface``, ``insightface``) share: the unit counts read off the keys, the
check of every renamed weight against the architecture (errors name the key *as the file spells it*), and
the write of the model folder, which never replaces another model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from marginlab.models import ModelFileError, raise_problems, read_model_file, save_imported_model, tensor_problem
from marginlab.models import WeightsMismatchError

__all__ = ["check_weights", "checked_arch", "prepare_folder", "units_by_channels", "write_model"]


def units_by_channels(unit_channels: Mapping[int, int], stage_channels: tuple[int, ...]) -> tuple[int, ...]:
    """Units per stage from ``{unit index: its output channels}``: the units are consecutive and each stage has
    its own channel count, so counting each count gives the stage sizes."""
    ordered = [unit_channels[i] for i in sorted(unit_channels)]
    return tuple(ordered.count(c) for c in stage_channels)


def checked_arch(src: Path, found: tuple[int, ...], archs: Mapping[str, tuple[int, ...]], given: str | None,
                 where: str) -> str:
    """The architecture whose unit counts are ``found`` (read from ``where``, the keys that gave them), checked
    against ``given`` (``--arch``) when there is one."""
    inferred = next((name for name, units in archs.items() if tuple(units) == tuple(found)), None)
    if given is not None and inferred != given:
        raise ModelFileError(
            f"{src}: --arch {given} has units per stage {list(archs[given])}, but the file's {where} give "
            f"{list(found)}" + (f" ({inferred})" if inferred else "")
        )
    if inferred is None:
        known = ", ".join(f"{name} {list(units)}" for name, units in archs.items())
        raise ModelFileError(f"{src}: units per stage {list(found)} (from {where}) match no known architecture ({known})")
    return inferred


def check_weights(src: Path, module: torch.nn.Module, state: Mapping[str, Any], file_key: Callable[[str], str]) -> dict[str, Any]:
    """``state`` (keys renamed to ``module``'s) checked key by key, shape and dtype kind; problems name the key
    as the file spells it (``file_key``). A missing ``num_batches_tracked`` is filled with 0: it only counts
    training steps, and eval-mode BatchNorm never reads it."""
    expected = module.state_dict()
    state = dict(state)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    problems = [f"{file_key(k)} is missing (the architecture has it)" for k in expected if k not in state]
    problems += [f"{file_key(k)} is not part of the architecture" for k in state if k not in expected]
    for key, want in expected.items():
        if key in state:
            problem = tensor_problem(file_key(key), state[key], want)
            if problem:
                problems.append(problem)
    try:
        raise_problems(str(src), problems)
    except WeightsMismatchError as err:
        raise ModelFileError(f"{err}; nothing was written") from None
    return state


def prepare_folder(out: Path, imported: Mapping[str, Any]) -> Path:
    """``out/model.pt``, after checking that ``out`` holds no other model: the same import again (same format,
    file hash and architecture) may rewrite it, anything else is refused."""
    from marginlab.released.embedder import ONNX_RECORD

    if out.exists() and not out.is_dir():
        raise ModelFileError(f"{out} exists and is not a folder (the model folder to write)")
    if (out / ONNX_RECORD).is_file():
        raise ModelFileError(f"{out} already holds an imported ONNX model ({ONNX_RECORD}); choose another --out")
    target = out / "model.pt"
    if target.exists():
        try:
            previous = read_model_file(target).get("imported") or {}
        except ModelFileError as err:
            raise ModelFileError(f"{out} already holds a model.pt that is not an import of this file ({err}); "
                                 "choose another --out") from None
        same = all(previous.get(k) == imported.get(k) for k in ("format", "sha256", "arch"))
        if not same:
            what = (f"an import of {previous.get('source')} ({previous.get('format')} {previous.get('arch')})"
                    if previous else "a trained run's model")
            raise ModelFileError(f"{out} already holds another model ({what}); choose another --out or remove it first")
    return target


def write_model(out: Path, *, backbone: str, module: torch.nn.Module, state: Mapping[str, Any], embedding_size: int,
                input_size: int, channel_order: str, imported: Mapping[str, Any],
                head_state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write ``out/model.pt`` (atomically) and return ``out``."""
    target = prepare_folder(out, imported)
    if head_state is not None:
        head_state = {k: v for k, v in head_state.items() if isinstance(v, torch.Tensor)} or None
    save_imported_model(target, backbone=backbone, backbone_state={k: state[k] for k in module.state_dict()},
                        embedding_size=embedding_size, input_size=input_size, channel_order=channel_order,
                        imported=imported, head_state=head_state)
    return out
