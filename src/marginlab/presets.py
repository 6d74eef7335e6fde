"""Presets as overlays: ``configs/<name>.yaml`` holds only what differs from the default ``params.yaml``.

``marginlab compose configs/smoke.yaml --out params.yaml`` writes the default with the overlay applied, so a
change to the default (a new key, a new default value) reaches every preset, and a preset says in a
screenful what it changes. Rules, the same for every overlay:

- mappings merge key by key, recursively; any other value (a number, a list, ``null``) replaces;
- ``runs`` (the grid) is replaced whole: a preset's grid is its own, never the default's runs plus its;
- an overlay must name its ``preset``; the base must be the default (``preset: default``), so overlays
  never stack by accident (``--params`` names another base on purpose);
- the result is validated (:func:`marginlab.core.config.validate_params`) before anything is written, and the
  base's comments are kept (DVC's round-trip YAML library).
"""

from __future__ import annotations

import copy
import io
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from marginlab.core.safe_yaml import YamlLimitError, load_bounded

__all__ = ["REPLACED_WHOLE", "PresetError", "compose", "compose_raw", "compose_text"]

#: Top-level keys an overlay replaces whole instead of merging.
REPLACED_WHOLE = frozenset({"runs"})
DEFAULT_PRESET = "default"


class PresetError(ValueError):
    """An overlay or base that cannot be composed; the message names the file and the key."""


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    try:
        raw = load_bounded(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise PresetError(f"cannot read {what} {path}: {err.strerror or err}") from None
    except (yaml.YAMLError, YamlLimitError, UnicodeDecodeError) as err:
        raise PresetError(f"{what} {path} is not valid YAML: {err}") from None
    if not isinstance(raw, Mapping) or not raw:
        raise PresetError(f"{what} {path} must be a non-empty YAML mapping (got {type(raw).__name__})")
    return dict(raw)


def _merge(base: Any, overlay: Mapping[str, Any], where: str, path: Path) -> None:
    """Apply ``overlay`` to the mapping ``base`` in place (``base`` may be a ruamel CommentedMap)."""
    for key, value in overlay.items():
        dotted = f"{where}.{key}" if where else str(key)
        whole = not where and key in REPLACED_WHOLE
        if isinstance(value, Mapping) and not whole and isinstance(base.get(key), Mapping):
            _merge(base[key], value, dotted, path)
        elif isinstance(value, Mapping) and not whole and key in base and base[key] is not None:
            raise PresetError(
                f"{path}: '{dotted}' is a mapping in the overlay but {type(base[key]).__name__} in the base"
            )
        else:
            base[key] = value


def _check_names(
    base: Mapping[str, Any], overlay: Mapping[str, Any], base_path: Path, overlay_path: Path, explicit_base: bool
) -> str:
    name = overlay.get("preset")
    if not isinstance(name, str) or not name or name == DEFAULT_PRESET:
        raise PresetError(
            f"{overlay_path}: an overlay names itself with a 'preset' key other than "
            f"{DEFAULT_PRESET!r} (e.g. preset: {overlay_path.stem})"
        )
    if not explicit_base and base.get("preset", DEFAULT_PRESET) != DEFAULT_PRESET:
        raise PresetError(
            f"{base_path} holds preset {base.get('preset')!r}, not the default: overlays apply to the "
            f"default params (git checkout {base_path.name}, or name a base with --params)"
        )
    return name


def _compose(
    overlays: tuple[str | Path, ...], base_path: Path, explicit_base: bool
) -> tuple[dict[str, Any], list[tuple[Path, dict[str, Any]]]]:
    """The composed plain data and each overlay as read (each file is read and checked once)."""
    merged = _read_mapping(base_path, "base params")
    read = []
    for i, overlay in enumerate(overlays):
        path = Path(overlay)
        ov = _read_mapping(path, "overlay")
        _check_names(merged, ov, base_path, path, explicit_base or i > 0)
        _merge(merged, copy.deepcopy(ov), "", path)  # a copy: a later overlay must not edit this one
        read.append((path, ov))
    return merged, read


def compose_raw(*overlays: str | Path, base: str | Path = "params.yaml", explicit_base: bool = False) -> dict[str, Any]:
    """The composed params as plain data (no comments): ``base`` with every overlay applied in order."""
    return _compose(overlays, Path(base), explicit_base)[0]


def compose_text(*overlays: str | Path, base: str | Path = "params.yaml", explicit_base: bool = False) -> str:
    """The composed params as YAML text, the base's comments kept, validated first."""
    from ruamel.yaml import YAML

    from marginlab.core.config import ConfigError, validate_params

    raw, read = _compose(overlays, Path(base), explicit_base)
    try:
        validate_params(raw)
    except ConfigError as err:
        names = " + ".join(str(o) for o in overlays)
        raise PresetError(f"{names} on {base}: the composed params are invalid: {err}") from None
    yaml = YAML(typ="rt")  # round trip: plain mappings, sequences and scalars, never Python objects
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    # The base was read with the bounded safe loader above; this second read only recovers its comments.
    doc = yaml.load(Path(base).read_text(encoding="utf-8"))
    for path, ov in read:
        _merge(doc, ov, "", path)
    _one_line_per_run(doc)
    out = io.StringIO()
    names = " ".join(str(o) for o in overlays)
    out.write(
        f"# Composed by `marginlab compose {names}` from {Path(base).name}: the overlay's values replace the\n"
        f"# default's below (runs: the whole grid). Edit the overlay, not this file, to change the preset.\n"
    )
    yaml.dump(doc, out)
    return out.getvalue()


def _one_line_per_run(doc: Any) -> None:
    """Write every run of an overlay's grid on one line, as the presets do (``name: {head: ..., seed: 0}``)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    def flow(value: Any) -> Any:
        if isinstance(value, Mapping):
            node = CommentedMap((k, flow(v)) for k, v in value.items())
            node.fa.set_flow_style()
            return node
        if isinstance(value, list):
            seq = CommentedSeq(flow(v) for v in value)
            seq.fa.set_flow_style()
            return seq
        return value

    runs = doc.get("runs")
    if isinstance(runs, Mapping) and not isinstance(runs, CommentedMap):  # an overlay's grid, not the base's own
        doc["runs"] = CommentedMap((name, flow(spec)) for name, spec in runs.items())


def compose(overlays: list[str], base: str | None, out: str) -> Path | None:
    """``marginlab compose``: write the composed params to ``out`` (``-``: standard output) atomically."""
    from marginlab.core.io import atomic_path

    base_path = Path(base or "params.yaml")
    if out == "-" and not sys.stdout.isatty():
        try:
            same = os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(base_path))
        except (OSError, ValueError, io.UnsupportedOperation):
            same = False
        if same:  # `compose x.yaml > params.yaml`: the shell has already emptied the base
            raise PresetError(
                f"standard output is {base_path} itself, which the shell emptied before compose could "
                f"read it: restore it (git checkout {base_path.name}) and use --out {base_path.name}"
            )
    text = compose_text(*overlays, base=base_path, explicit_base=base is not None)
    if out == "-":
        sys.stdout.write(text)
        return None
    target = Path(out)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
