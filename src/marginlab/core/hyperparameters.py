"""Declared hyperparameters: a default and its valid values, together, without torch.

A :class:`Range` (a real in an interval) or a :class:`Choice` (one of a few names) is the one declaration
of a hyperparameter: the heads check their arguments with it, and the config schema derives its fields
(type, default, bounds) from it, so ``params.yaml`` and the heads cannot disagree. This module imports no
torch, so the config (and every stage that only reads params) starts without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Optional

__all__ = ["Choice", "Range", "check_real", "check_values", "format_hyperparameter"]


def _interval(low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> str:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"


def check_real(
    owner: str,
    name: str,
    value: Any,
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``float(value)`` after checking it is a finite real number inside the given interval.

    ``owner`` names what the value belongs to (``head 'adaface'``). A one-element array or tensor counts as
    its element. Raises ``ValueError`` naming the owner, the hyperparameter, the value and the range.
    """
    if hasattr(value, "numel") and callable(value.numel) and value.numel() == 1:
        value = value.item()  # a scalar tensor, without importing torch here
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{owner}: hyperparameter {name!r} must be a real number, got {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        raise ValueError(
            f"{owner}: hyperparameter {name!r} = {value!r} is outside the allowed range "
            f"{_interval(low, high, low_open, high_open)}"
        )
    return value


@dataclass(frozen=True)
class Range:
    """A real hyperparameter: its default (the paper's value) and its valid interval.

    ``low``/``high`` of ``None`` are unbounded; ``low_open``/``high_open`` exclude the bound.
    """

    default: float
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def __post_init__(self) -> None:
        self.check("the declaration", "default", self.default)  # a default outside its own range is a bug

    def check(self, owner: str, name: str, value: Any) -> float:
        """``float(value)`` if it is a finite real inside the range, else ``ValueError`` naming it."""
        return check_real(
            owner, name, value, low=self.low, high=self.high, low_open=self.low_open, high_open=self.high_open
        )

    def field_bounds(self) -> dict[str, float]:
        """The pydantic ``Field`` constraints (gt/ge/lt/le) of this range."""
        out: dict[str, float] = {}
        if self.low is not None:
            out["gt" if self.low_open else "ge"] = self.low
        if self.high is not None:
            out["lt" if self.high_open else "le"] = self.high
        return out

    @property
    def field_type(self) -> Any:
        return float

    def __str__(self) -> str:
        return _interval(self.low, self.high, self.low_open, self.high_open)


@dataclass(frozen=True)
class Choice:
    """A hyperparameter that takes one of a few named values (e.g. how running statistics start)."""

    default: str
    options: tuple[str, ...]

    def __post_init__(self) -> None:
        self.check("the declaration", "default", self.default)

    def check(self, owner: str, name: str, value: Any) -> str:
        """``value`` if it is one of :attr:`options`, else ``ValueError`` naming them."""
        if not isinstance(value, str) or value not in self.options:
            raise ValueError(f"{owner}: hyperparameter {name!r} = {value!r} is not one of {', '.join(self.options)}")
        return value

    def field_bounds(self) -> dict[str, float]:
        return {}

    @property
    def field_type(self) -> Any:
        return Literal[self.options]  # type: ignore[valid-type]

    def __str__(self) -> str:
        return "{" + ", ".join(self.options) + "}"


Hyperparameter = Range | Choice


def check_values(
    owner: str,
    declared: Mapping[str, Hyperparameter],
    values: Mapping[str, Any],
    relations: Optional[Callable[[dict[str, Any]], None]] = None,
) -> dict[str, Any]:
    """Check ``values`` against their declarations (unknown keys rejected) and the cross-parameter
    ``relations``; returns them as floats (a :class:`Choice` as its string)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in declared:
            raise ValueError(f"{owner}: unknown hyperparameter {key!r}; allowed: {', '.join(sorted(declared))}")
        out[key] = declared[key].check(owner, key, value)
    if relations is not None:
        relations(out)
    return out


def format_hyperparameter(value: Any) -> str:
    """``0.4`` → ``0.4``, a :class:`Choice` value as it is: one spelling for reprs, tables and labels."""
    return value if isinstance(value, str) else f"{value:g}"
