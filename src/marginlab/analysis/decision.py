"""How far each verdict lies from flipping: distances to the rules' thresholds in standard errors.

A verdict computed on one machine must say how robust it is, because float results differ across
CPU types (issue #14). Every rule of :mod:`.claims` decides from items (a run's interval, a
comparison's difference) and each item lies some number of standard errors past, or short of, the
boundary where its state changes. A part's verdict then has a *deciding distance*:

- ``to_supported``: how far (in SEs) the part is past the boundary of *supported* (positive: it is
  supported; negative: how far short of it). All-of rules take the weakest item (the minimum).
- ``to_not_supported``: the same for *not supported*; all-of rules (every interval below the effect
  size) take the minimum, any-of rules (one clearly worse comparison suffices) the maximum.
- ``distance_se`` of the verdict: ``to_supported`` when supported, ``to_not_supported`` when not
  supported, and for *inconclusive* the larger of the two (both negative: how far the nearer decisive
  verdict is out of reach). ``borderline``: ``|distance_se| < 1``
  (:data:`marginlab.analysis.power.BORDERLINE_SE`): one standard error of noise — another CPU, another
  seed — could flip it.

Items:

- :func:`interval_item`: an estimate with a symmetric-normal confidence interval (``se`` = CI width /
  (2 z)); supported side ``lo / se`` (lower bound past 0), not-supported side ``(effect - hi) / se``;
  its minimum detectable effect is ``(z + Φ⁻¹(0.8))·se`` (:func:`.power.clear_rule_mde`): the smallest
  true value the interval rule calls supported with 80 % power.
- :func:`comparison_sides`: a difference ``d`` with standard error ``se`` under the |d| > z·SE rule:
  better side ``d/se - z``, worse side ``-d/se - z``.

Analytic verdicts (no sampling noise) carry no distance (None) and are never borderline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

import numpy as np
from scipy import stats

from marginlab.analysis.power import clear_rule_mde, is_borderline

__all__ = ["all_of", "any_of", "comparison_sides", "decision", "interval_item", "part_decision", "verdict_distance"]


def _finite(values: Iterable[Optional[float]]) -> list[float]:
    return [float(v) for v in values if v is not None and np.isfinite(v)]


def interval_item(estimate: float, lo: float, hi: float, effect: float, confidence: float = 0.95) -> dict[str, float]:
    """``se``, ``to_supported``, ``to_not_supported`` and ``mde`` of one interval (module docstring)."""
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    se = (hi - lo) / (2.0 * z) if np.isfinite(hi) and np.isfinite(lo) else float("nan")
    if not np.isfinite(se) or se <= 0:
        return {"se": float("nan"), "to_supported": float("nan"), "to_not_supported": float("nan"), "mde": float("nan")}
    return {"se": float(se), "to_supported": float(lo / se), "to_not_supported": float((effect - hi) / se),
            "mde": clear_rule_mde(se, z), "estimate": float(estimate)}


def comparison_sides(delta: float, se: float, z: float) -> tuple[float, float]:
    """``(better side, worse side)`` in SEs of a difference under the |d| > z·SE rule (NaN without noise)."""
    if not (np.isfinite(delta) and np.isfinite(se)) or se <= 0:
        return float("nan"), float("nan")
    return float(delta / se - z), float(-delta / se - z)


def all_of(sides: Sequence[float]) -> float:
    """Distance of a rule that needs every item past its boundary: the weakest item (NaN if any unknown)."""
    vals = _finite(sides)
    return min(vals) if vals and len(vals) == len(sides) else float("nan")


def any_of(sides: Sequence[float]) -> float:
    """Distance of a rule that one item past its boundary satisfies: the strongest known item."""
    vals = _finite(sides)
    return max(vals) if vals else float("nan")


def verdict_distance(verdict: str, to_supported: Optional[float], to_not_supported: Optional[float]) -> Optional[float]:
    """The deciding distance of ``verdict`` (module docstring); None when neither side is known."""
    sup = to_supported if to_supported is not None and np.isfinite(to_supported) else None
    neg = to_not_supported if to_not_supported is not None and np.isfinite(to_not_supported) else None
    if verdict == "supported":
        return sup
    if verdict == "not supported":
        return neg
    known = [v for v in (sup, neg) if v is not None]
    return max(known) if known else None


def decision(verdict: str, to_supported: Optional[float], to_not_supported: Optional[float],
             deciding: str = "") -> dict[str, Any]:
    """The ``decision`` entry of a claim or part: both sides, the verdict's distance and borderline."""
    distance = verdict_distance(verdict, to_supported, to_not_supported)
    out: dict[str, Any] = {
        "to_supported_se": to_supported if to_supported is not None and np.isfinite(to_supported) else None,
        "to_not_supported_se": to_not_supported if to_not_supported is not None and np.isfinite(to_not_supported) else None,
        "distance_se": distance,
        "borderline": bool(distance is not None and is_borderline(distance)),
    }
    if deciding:
        out["deciding"] = deciding
    return out


def part_decision(parts: Sequence[Mapping[str, Any]], verdict: str) -> dict[str, Any]:
    """A claim's decision from its parts' under :func:`.claims.combine`.

    Supported needs every part supported (the weakest part); one not-supported part suffices for not
    supported (the strongest such part's side). Parts without a decision (analytic) count as exact.
    """
    decided = [p["decision"] for p in parts if p.get("decision") is not None]
    if not decided:
        return decision(verdict, None, None, "no data")
    if all(d["to_supported_se"] is None and d["to_not_supported_se"] is None for d in decided):
        return decision(verdict, None, None, decided[0].get("deciding", ""))
    sup = [d["to_supported_se"] for d in decided]
    neg = [d["to_not_supported_se"] for d in decided]
    return decision(verdict, all_of([np.nan if s is None else s for s in sup]), any_of([np.nan if n is None else n for n in neg]),
                    "parts: supported needs every part (weakest part), not supported one part (strongest)")
