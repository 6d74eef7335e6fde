"""Lay out a claim's evidence (nested JSON numbers from ``claims.json``) as key-values and tables.

A verdict's numbers are nested: ``{"runs": {"adaface-s0": {"spearman": .., "spearman_ci": [..]}}}``,
``{"comparisons": [{"a": .., "b": .., "delta": ..}, ...]}``, or deeper
(``{"ratios": {"j=0": {"cosface": {"ratio": ..}}}}``). Read as a flat list of paths they are hard to
compare, so :func:`layout_evidence` turns them into

- ``scalars``: the top-level numbers and strings (a list of scalars, e.g. a CI, stays one value);
- ``tables``: one per nested entry; each row is a *record* — the innermost mapping that holds
  scalars — labelled by the keys leading to it (``"j=0 · cosface"``), one column per scalar key in
  order of first appearance; a cell is empty where a record lacks that key.

Values are formatted by the caller's ``fmt`` (the report's number format), so the tables show the
same digits as the rest of the report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EvidenceTable", "LABEL_SEPARATOR", "layout_evidence"]

LABEL_SEPARATOR = " · "


@dataclass
class EvidenceTable:
    title: str
    columns: list[str]
    rows: list[tuple[str, list[str]]] = field(default_factory=list)  # (row label, cells by column)


def _is_scalar(value: Any) -> bool:
    if isinstance(value, (Mapping, list, tuple)):
        return isinstance(value, (list, tuple)) and not any(isinstance(v, (Mapping, list, tuple)) for v in value)
    return True


def _records(value: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """``[(label path, {scalar key: value})]`` for every mapping holding scalars, depth first."""
    if isinstance(value, Mapping):
        own = {str(k): v for k, v in value.items() if _is_scalar(v)}
        out = [(path, own)] if own else []
        for k, v in value.items():
            if not _is_scalar(v):
                out += _records(v, (*path, str(k)))
        return out
    if isinstance(value, (list, tuple)):
        out = []
        for i, v in enumerate(value):
            out += _records(v, (*path, str(i + 1)))
        return out
    return [(path, {"value": value})]


def layout_evidence(numbers: Any, fmt: Callable[[Any], str]) -> tuple[list[tuple[str, str]], list[EvidenceTable]]:
    """``(scalars, tables)`` of a claim's or part's ``numbers`` (module docstring)."""
    if not isinstance(numbers, (Mapping, list, tuple)) or not numbers:
        return [], []
    if not isinstance(numbers, Mapping):
        numbers = {"values": numbers}
    scalars = [(str(k), fmt(v)) for k, v in numbers.items() if _is_scalar(v)]
    tables = []
    for key, value in numbers.items():
        if _is_scalar(value):
            continue
        records = _records(value, ())
        if not records:
            continue
        columns: list[str] = []
        for _, rec in records:
            columns += [c for c in rec if c not in columns]
        table = EvidenceTable(title=str(key), columns=columns)
        for label, rec in records:
            table.rows.append((LABEL_SEPARATOR.join(label), [fmt(rec[c]) if c in rec else "" for c in columns]))
        tables.append(table)
    return scalars, tables
