"""How the report writes numbers: fixed decimals, mean ± std, p-values, signed deltas and durations,
with "—" for a missing or non-finite value (never "nan")."""

from __future__ import annotations

import math
from typing import Any


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt_value(value: Any, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals; "—" for missing / NaN."""
    v = _finite(value)
    return "—" if v is None else f"{v:.{digits}f}"


def fmt_mean_std(mean: Any, std: Any, digits: int = 2) -> str:
    """``"mean ± std"`` (std omitted when undefined, e.g. one seed)."""
    m, s = _finite(mean), _finite(std)
    if m is None:
        return "—"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if s is not None else f"{m:.{digits}f}"


def fmt_corr(value: Any) -> str:
    return fmt_value(value, 3)


def fmt_p(value: Any) -> str:
    v = _finite(value)
    return "—" if v is None else f"{v:.3g}"


def fmt_signed(value: Any, digits: int = 2) -> str:
    v = _finite(value)
    return "—" if v is None else f"{v:+.{digits}f}"


def fmt_number(value: Any) -> str:
    """Generic display of a JSON value (claims' numbers): 4 significant digits for floats."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_number(v) for v in value) + "]"
    return str(value)


def fmt_seconds(value: Any) -> str:
    v = _finite(value)
    if v is None:
        return "not recorded"
    if v < 120:
        return f"{v:.1f} s"
    return f"{v / 60:.1f} min" if v < 7200 else f"{v / 3600:.2f} h"
