"""``dvc.yaml`` edited in place: read with DVC's own YAML library in round-trip mode (comments, quoting and
layout survive) and written back atomically, for the generators of its ``deps:`` and ``params:`` lists."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

__all__ = ["load", "save", "stage_bodies"]


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")  # round trip: plain mappings, sequences and scalars, never Python objects
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def load(path: Path) -> Any:
    return _yaml().load(path.read_text())


def save(doc: Any, path: Path) -> None:
    out = io.StringIO()
    _yaml().dump(doc, out)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(out.getvalue())
    tmp.replace(path)


def stage_bodies(doc: Any) -> dict[str, Any]:
    """Each stage's definition (a ``foreach``/``matrix`` stage's ``do`` body) by stage name."""
    return {
        name: stage.get("do", stage) if ("foreach" in stage or "matrix" in stage) else stage
        for name, stage in (doc.get("stages") or {}).items()
    }
