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
  supported, and for *inconclusive* the larger of the sides that are short of their threshold (negative:
  how far the nearer decisive verdict is out of reach); None when no side is short (the verdict is held
  back by a condition that is not a noise boundary, e.g. claim 5a's order of gains). ``borderline``: ``|distance_se| < 1``
  (:data:`marginlab.analysis.power.BORDERLINE_SE`): one standard error of noise — another CPU, another
  seed — could flip it.

Items:

- :func:`interval_item`: an estimate with a symmetric-normal confidence interval (``se`` = CI width /
  (2 z)); with the seed spread ``s`` of the estimate over runs, ``noise`` = sqrt(se² + s²) (else se):
  supported side ``lo / noise`` (lower bound past 0), not-supported side ``(effect - hi) / noise``;
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

from marginlab.analysis.power import ci_se, clear_rule_mde, is_borderline

__all__ = ["all_of", "any_of", "comparison_sides", "decision", "interval_item", "part_decision", "verdict_distance"]


def _finite(values: Iterable[Optional[float]]) -> list[float]:
    return [float(v) for v in values if v is not None and np.isfinite(v)]


def interval_item(estimate: float, lo: float, hi: float, effect: float, confidence: float = 0.95,
                  seed_std: float = float("nan")) -> dict[str, float]:
    """``se``, ``noise``, ``to_supported``, ``to_not_supported`` and ``mde`` of one interval (module docstring).

    ``se`` is the interval's own (sampling) standard error; with ``seed_std`` (the spread of the estimate
    over seeds, i.e. runs) the distances are in ``noise`` = sqrt(se² + seed_std²) units: how far another
    seed or CPU type would have to move the bound to flip the item.
    """
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    se = float(ci_se(lo, hi, confidence)) if np.isfinite(hi) and np.isfinite(lo) else float("nan")
    if not np.isfinite(se) or se <= 0:
        return {"se": float("nan"), "noise": float("nan"), "to_supported": float("nan"),
                "to_not_supported": float("nan"), "mde": float("nan")}
    noise = float(np.hypot(se, seed_std)) if np.isfinite(seed_std) else se
    return {"se": se, "noise": noise, "to_supported": float(lo / noise), "to_not_supported": float((effect - hi) / noise),
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
    # inconclusive: only a side short of its threshold is a distance to a decisive verdict (a side past its
    # threshold means the verdict is held back by a condition that is not a noise boundary)
    short = [v for v in (sup, neg) if v is not None and v < 0]
    return max(short) if short else None


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
    decisions = [p.get("decision") for p in parts]
    if all(d is None for d in decisions):
        return decision(verdict, None, None, "no data")
    # exact parts (analytic: both sides None) never limit; a part without data leaves 'supported' unknown
    noisy = [d for d in decisions if d is None or d["to_supported_se"] is not None or d["to_not_supported_se"] is not None]
    if not noisy:
        return decision(verdict, None, None, next(d for d in decisions if d is not None).get("deciding", ""))
    sup = [np.nan if d is None or d["to_supported_se"] is None else d["to_supported_se"] for d in noisy]
    neg = [np.nan if d is None or d["to_not_supported_se"] is None else d["to_not_supported_se"] for d in noisy]
    return decision(verdict, all_of(sup), any_of(neg),
                    "parts: supported needs every part (weakest part), not supported one part (strongest)")
