"""``runs/<run>/model.pt``: the selected weights plus everything needed to rebuild and feed the model.

The one definition of the model file format, owned by both sides: training writes it
(:func:`save_model`, via ``marginlab.train``) and evaluation reads it (:func:`load_model`), so
evaluation does not depend on the training layer.

Contents (a ``torch.save`` dict of tensors and plain Python values, loadable with ``weights_only=True``):
``format``, ``version``, ``backbone`` and ``head`` state dicts, ``resolved_run`` (the ResolvedRun as a
dict), ``num_classes``, ``embedding_size``, ``input_size``, ``channel_order``, ``normalisation``
(``"(x/255-0.5)/0.5"``), ``epoch`` (the selected epoch) and ``selection`` (``last`` or ``val``).

An imported model (``marginlab import-model``: a released checkpoint, :mod:`marginlab.released`) has no
training run: instead of ``resolved_run`` it records ``architecture`` (``backbone`` name of the backbone
registry, ``embedding_size``, ``input_size``, ``options``) and ``imported`` (source file, its sha256,
format, arch, and what is known of its training: ``trained_on``, ``images_seen``); ``head`` may be
``None`` (:func:`save_imported_model`). :func:`load_backbone` reads both kinds; :func:`load_model`,
which rebuilds the training head too, reads trained runs only.

Loading checks the file before any weight reaches a module (:func:`check_state_dict`: keys, shapes, dtype
kinds) and, given the run's current configuration, that the file was trained with it
(:func:`check_trained_config`); ``load_state_dict`` alone would cast complex weights to real without a word
and fail on a wrong shape with a bare traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from marginlab.core.config import ResolvedRun
from marginlab.core.io import RefusedFileError, torch_load_data, torch_save
from marginlab.core.layouts import RunLayout

MODEL_FORMAT = "marginlab-model"
MODEL_VERSION = 1
NORMALISATION = "(x/255-0.5)/0.5"


class ModelFileError(RuntimeError):
    """``model.pt`` missing, unreadable, not written by this package, or not of the run it is loaded for."""


class WeightsMismatchError(ValueError):
    """Tensors that do not fit the module they would be loaded into; the loaders re-raise it as their own error."""


#: The real floating-point dtypes a floating weight may have on disk (``load_state_dict`` casts among them).
REAL_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
#: Problems named in one error message; the rest are counted.
_SHOWN_PROBLEMS = 3

#: ``train`` keys that say how a run was executed or measured, not what it learned (see
#: :func:`check_trained_config`).
EXECUTION_TRAIN_KEYS = ("num_workers", "threads", "device", "amp", "channels_last", "compile", "distributed",
                        "probe_size", "probe_progress")
#: ResolvedRun fields that name or group a run.
NAMING_FIELDS = ("name", "label", "tags")


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def tensor_problem(label: str, got: Any, expected: torch.Tensor) -> str | None:
    """Why ``got`` cannot take the place of ``expected`` (``None`` if it can): not a dense tensor, another
    dtype kind (a floating entry must be real floating point, an integer one integer, a bool one bool) or
    another shape. Values are not looked at: NaN weights are a diverged run's weights, not a bad file."""
    if not isinstance(got, torch.Tensor):
        return f"{label} is a {type(got).__name__}, not a tensor"
    if got.layout != torch.strided:
        return f"{label} is a {str(got.layout).removeprefix('torch.')} tensor, the architecture expects a dense one"
    want = expected.dtype
    if want.is_floating_point:
        ok, kind = got.dtype in REAL_FLOAT_DTYPES, "real floating point: " + ", ".join(map(_dtype, REAL_FLOAT_DTYPES))
    elif want == torch.bool:
        ok, kind = got.dtype == torch.bool, "bool"
    elif want in _INTEGER_DTYPES:
        ok, kind = got.dtype in _INTEGER_DTYPES, "an integer dtype"
    else:
        ok, kind = got.dtype == want, _dtype(want)
    if not ok:
        return f"{label} has dtype {_dtype(got.dtype)}, the architecture expects {_dtype(want)} ({kind})"
    if got.shape != expected.shape:
        return f"{label} has shape {_shape(got)}, the architecture expects {_shape(expected)}"
    return None


def raise_problems(source: str, problems: list[str]) -> None:
    """One :class:`WeightsMismatchError` (one line) for ``problems``, if any: the first few named, the rest counted."""
    if not problems:
        return
    shown = "; ".join(problems[:_SHOWN_PROBLEMS])
    more = len(problems) - _SHOWN_PROBLEMS
    raise WeightsMismatchError(f"{source}: {shown}" + (f"; and {more} more" if more > 0 else ""))


def state_dict_problems(module: nn.Module, state: Any, prefix: str) -> list[str]:
    """Every way ``state`` differs from ``module.state_dict()``: missing and unexpected keys, dtype kinds, shapes."""
    if not isinstance(state, Mapping):
        return [f"{prefix} is {'missing' if state is None else f'a {type(state).__name__}, not a state dict'}"]
    expected = module.state_dict()
    problems = [f"{prefix}.{k} is missing (the architecture has it)" for k in expected if k not in state]
    problems += [f"{prefix}.{k} is not part of the architecture" for k in state if k not in expected]
    for key, want in expected.items():
        if key in state and isinstance(want, torch.Tensor):  # non-tensor extra state: presence only
            problem = tensor_problem(f"{prefix}.{key}", state[key], want)
            if problem:
                problems.append(problem)
    return problems


def check_state_dict(module: nn.Module, state: Any, *, source: str, prefix: str) -> None:
    """Raise :class:`WeightsMismatchError` unless ``state`` has exactly ``module``'s keys, with its shapes and
    dtype kinds; call it before ``load_state_dict``, which would cast complex values to real silently and
    report a wrong shape as a traceback. ``source`` (the file) and ``prefix`` (``backbone``) name the entry."""
    raise_problems(source, state_dict_problems(module, state, prefix))


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _learned_config(run: ResolvedRun) -> dict[str, Any]:
    data = run.model_dump(mode="json")
    for key in NAMING_FIELDS:
        data.pop(key, None)
    for key in EXECUTION_TRAIN_KEYS:
        data["train"].pop(key, None)
    return _flat(data)


_ABSENT = object()


def check_trained_config(recorded: ResolvedRun, current: ResolvedRun, path: str | Path) -> None:
    """Raise :class:`ModelFileError` unless ``model.pt`` at ``path`` (``recorded``) was trained with the run's
    ``current`` configuration, naming each differing key with both values.

    Compared: what decides the learned weights: ``head``, ``head_params``, ``proxy``, ``seed``, all of
    ``model`` and ``train`` except :data:`EXECUTION_TRAIN_KEYS`. Those say how a run was executed (device,
    threads, loader workers, amp, channels_last, compile, distributed: hardware choices; ``auto`` resolves
    differently per machine, and a checkpoint resumes across compile and process counts) or measured
    (``probe_size``, ``probe_progress``: the probe never changes training). ``name``, ``label`` and ``tags``
    only name and group a run. Not compared, because ``model.pt`` does not record them: the global
    ``seed``, ``augment`` and the data.
    """
    old, new = _learned_config(recorded), _learned_config(current)
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if a != b:
            shown_a = "(absent)" if a is _ABSENT else repr(a)
            shown_b = "(absent)" if b is _ABSENT else repr(b)
            diffs.append(f"{key} = {shown_a}, params say {shown_b}")
    if diffs:
        run = current.name
        raise ModelFileError(
            f"{path} was trained with another configuration than params give run {run!r}: {'; '.join(diffs)}; "
            f"retrain (dvc repro train@{run}) or restore the matching params"
        )


def build_modules(resolved: ResolvedRun, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """Backbone and head of a run, freshly initialised (current RNG state)."""
    from marginlab.backbones import build_backbone
    from marginlab.heads import build_head

    m = resolved.model
    backbone = build_backbone(
        m.backbone, embedding_size=m.embedding_size, input_size=m.input_size, width=m.width, dropout=m.dropout
    )
    head = build_head(resolved.head, m.embedding_size, num_classes, **resolved.head_params)
    return backbone, head


def save_model(
    path: str | Path,
    *,
    backbone_state: dict[str, torch.Tensor],
    head_state: dict[str, torch.Tensor],
    resolved: ResolvedRun,
    num_classes: int,
    channel_order: str,
    epoch: int,
    selection: str,
) -> None:
    payload: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "backbone": {k: v.detach().cpu() for k, v in backbone_state.items()},
        "head": {k: v.detach().cpu() for k, v in head_state.items()},
        "resolved_run": resolved.model_dump(mode="json"),
        "num_classes": int(num_classes),
        "embedding_size": int(resolved.model.embedding_size),
        "input_size": int(resolved.model.input_size),
        "channel_order": channel_order,
        "normalisation": NORMALISATION,
        "epoch": int(epoch),
        "selection": selection,
    }
    torch_save(payload, path)


def read_model_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path} not found (train the run first: python -m marginlab train RUN)")
    try:
        payload = torch_load_data(path)
    except RefusedFileError as err:  # never unpickled, never run
        raise ModelFileError(f"{path} was refused: it holds objects other than tensors and plain data ({err}); "
                             "it was not loaded") from None
    except Exception as err:
        raise ModelFileError(f"{path} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not a marginlab model file (format tag {MODEL_FORMAT!r} missing)")
    if payload.get("version") != MODEL_VERSION:
        raise ModelFileError(f"{path} has version {payload.get('version')}; this code reads {MODEL_VERSION}")
    return payload


def load_model(run_dir: str | Path, device: str | torch.device = "cpu",
               expected: ResolvedRun | None = None) -> tuple[nn.Module, nn.Module, ResolvedRun]:
    """``(backbone, head, resolved_run)`` from ``run_dir/model.pt``, both modules in eval mode on ``device``.

    The input size and channel order the model expects are ``resolved_run.model.input_size`` and the
    file's ``channel_order`` (:func:`model_info`). With ``expected`` (the run's configuration from params)
    a file trained with another configuration is refused (:func:`check_trained_config`); every weight is
    checked against the rebuilt modules first (:func:`check_state_dict`). Failures are ModelFileError.
    """
    path = RunLayout(run_dir).model
    payload = read_model_file(path)
    resolved = _recorded_run(payload, path)
    if expected is not None:
        check_trained_config(resolved, expected, path)
    num_classes = payload.get("num_classes")
    if type(num_classes) is not int or num_classes < 1:
        raise ModelFileError(f"{path}: num_classes is {num_classes!r}, expected a positive integer")
    try:
        backbone, head = build_modules(resolved, num_classes)
    except (KeyError, ValueError, TypeError) as err:
        raise ModelFileError(f"{path}: the recorded architecture cannot be built "
                             f"({type(err).__name__}: {' '.join(str(err).split())})") from None
    try:
        for prefix, module in (("backbone", backbone), ("head", head)):
            check_state_dict(module, payload.get(prefix), source=str(path), prefix=prefix)
    except WeightsMismatchError as err:
        raise ModelFileError(f"{err}; it was not loaded (retrain the run: python -m marginlab train "
                             f"{path.parent.name})") from None
    backbone.load_state_dict(payload["backbone"])
    head.load_state_dict(payload["head"])
    device = torch.device(device)
    return backbone.to(device).eval(), head.to(device).eval(), resolved


def save_imported_model(
    path: str | Path,
    *,
    backbone: str,
    backbone_state: Mapping[str, torch.Tensor],
    embedding_size: int,
    input_size: int,
    channel_order: str,
    imported: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
    head_state: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Write a released model's backbone as ``model.pt`` (module docstring). The weights are checked against
    the registered ``backbone`` built with ``options`` first, so a file written here always loads."""
    from marginlab.backbones import build_backbone

    module = build_backbone(backbone, embedding_size=embedding_size, input_size=input_size, **dict(options or {}))
    check_state_dict(module, dict(backbone_state), source=str(path), prefix="backbone")
    payload: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "architecture": {"backbone": backbone, "embedding_size": int(embedding_size), "input_size": int(input_size),
                         "options": dict(options or {})},
        "backbone": {k: v.detach().cpu().contiguous() for k, v in backbone_state.items()},
        "head": None if head_state is None else {k: v.detach().cpu().contiguous() for k, v in head_state.items()},
        "imported": dict(imported),
        "embedding_size": int(embedding_size),
        "input_size": int(input_size),
        "channel_order": channel_order,
        "normalisation": NORMALISATION,
    }
    torch_save(payload, path)


def is_imported(payload: Mapping[str, Any]) -> bool:
    return payload.get("imported") is not None


def load_backbone(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """``(backbone, info)`` of ``run_dir/model.pt``, trained here or imported; eval mode, on ``device``.

    ``info``: the file's non-weight entries plus ``input_size``, ``channel_order`` and ``embedding_size`` for
    both kinds (what feeding the model needs)."""
    path = RunLayout(run_dir).model
    payload = read_model_file(path)
    info = {k: v for k, v in payload.items() if k not in ("backbone", "head")}
    if not is_imported(payload):
        backbone, _head, resolved = load_model(run_dir, device)
        info.setdefault("input_size", resolved.model.input_size)
        info.setdefault("embedding_size", resolved.model.embedding_size)
        info.setdefault("channel_order", "BGR")
        return backbone, info
    from marginlab.backbones import build_backbone

    arch = payload.get("architecture")
    if not isinstance(arch, Mapping) or not {"backbone", "embedding_size", "input_size"} <= set(arch):
        raise ModelFileError(f"{path}: imported model without a valid 'architecture' entry")
    try:
        backbone = build_backbone(arch["backbone"], embedding_size=arch["embedding_size"],
                                  input_size=arch["input_size"], **dict(arch.get("options") or {}))
        check_state_dict(backbone, payload.get("backbone"), source=str(path), prefix="backbone")
    except (WeightsMismatchError, ValueError, TypeError) as err:
        raise ModelFileError(f"{path}: {err}; it was not loaded (import the model again)") from None
    backbone.load_state_dict(payload["backbone"])
    return backbone.to(torch.device(device)).eval(), info


def trained_run(run_dir: str | Path) -> ResolvedRun:
    """The run configuration ``run_dir/model.pt`` was trained with: the run's identity for every stage after
    training (the params file may have changed since; the model is what was measured)."""
    path = RunLayout(run_dir).model
    return _recorded_run(read_model_file(path), path)


def _recorded_run(payload: dict[str, Any], path: Path) -> ResolvedRun:
    if is_imported(payload):
        raise ModelFileError(f"{path} is an imported model ({payload['imported'].get('format')}): it has no training "
                             "run; embed, verify, export-onnx and the released stage read it")
    try:
        return ResolvedRun.model_validate(payload.get("resolved_run"))
    except ValueError as err:  # pydantic's ValidationError
        raise ModelFileError(f"{path} records no valid run configuration ({' '.join(str(err).split())})") from None


def model_info(run_dir: str | Path) -> dict[str, Any]:
    """The non-weight entries of ``model.pt`` (input_size, channel_order, epoch, selection, ...)."""
    payload = read_model_file(RunLayout(run_dir).model)
    return {k: v for k, v in payload.items() if k not in ("backbone", "head")}
