"""How far each verdict lies from flipping: p-values of both decisive sides and their distances to the threshold.

A verdict computed on one machine must say how robust it is, because float results differ across
CPU types (issue #14), and a reader wants to know how close the data came to the other verdicts. Every
rule of :mod:`.verdict_rules` now decides through tests, so each part records two p-values on one scale — the
*two-sided-equivalent* p, which is ≤ α = 0.05 exactly when the part's own 95 % criterion is met:

- ``p_support``: the p-value of the test whose rejection makes the part *supported* (e.g. 2·P(T > t) of
  a seed-level interval's lower bound against 0; the largest of the unadjusted p-values for an "every
  comparison" rule, which is an intersection-union test; the smallest Holm-adjusted one for an "at least
  one" rule);
- ``p_refute``: the same for *not supported* (None when the part cannot be refuted, 0 for an exact
  analytic refutation).

:func:`p_decision` turns them into the ``decision`` block the report reads: ``to_supported_se`` /
``to_not_supported_se`` = z(p) - z(α), with z(p) = Φ⁻¹(1 - p/2): the distance of the test statistic from
its critical value in normal-equivalent standard errors (positive: past the threshold, the verdict side
is reached; negative: how far short). It is exact in sign (a side is positive exactly when its p ≤ α),
and for a normal statistic it equals |d|/SE - 1.96. ``distance_se`` of the verdict: ``to_supported``
when supported, ``to_not_supported`` when not supported, and for *inconclusive* the larger of the sides
that are short of their threshold (None when no side is short). ``borderline``: ``|distance_se| < 1``
(:data:`marginlab.analysis.power.BORDERLINE_SE`): one standard error of noise — another seed or CPU —
could flip it. :func:`claim_decision` combines parts as :func:`.verdict_rules.combine` does: supported needs
every part (the largest ``p_support``), not supported one part after Holm's adjustment over the
refutable parts (the smallest adjusted ``p_refute``).

For the single-run fallback: :func:`interval_item` (an estimate with a symmetric-normal confidence interval,
``se`` = CI width / (2 z); its MDE (z + Φ⁻¹(0.8))·se is the smallest true value one run's interval calls
supported with 80 % power).

Analytic verdicts (no sampling noise) carry no distance (None) and are never borderline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
from scipy import stats

from marginlab.analysis.power import ci_se, clear_rule_mde, is_borderline

__all__ = ["claim_decision", "decision", "interval_item", "p_decision", "p_distance", "verdict_distance"]




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




def p_distance(p: Optional[float], alpha: float = 0.05) -> float:
    """z(p) - z(α) with z(p) = Φ⁻¹(1 - p/2): positive exactly when p ≤ α (module docstring); NaN for None."""
    if p is None or not np.isfinite(p):
        return float("nan")
    p = min(max(float(p), 1e-300), 1.0)
    return float(stats.norm.isf(p / 2.0) - stats.norm.isf(alpha / 2.0))


def p_decision(verdict: str, p_support: Optional[float], p_refute: Optional[float], deciding: str = "",
               alpha: float = 0.05) -> dict[str, Any]:
    """The ``decision`` block of a part from its two p-values (module docstring), the p-values included."""
    out = decision(verdict, p_distance(p_support, alpha), p_distance(p_refute, alpha), deciding)
    clean = lambda p: None if p is None or not np.isfinite(p) else float(p)  # noqa: E731
    out.update(p_support=clean(p_support), p_refute=clean(p_refute), alpha=alpha)
    return out


def claim_decision(parts: Sequence[Mapping[str, Any]], verdict: str, alpha: float = 0.05) -> dict[str, Any]:
    """A claim's ``decision`` from its parts' p-values: supported needs every part (intersection-union: the
    largest ``p_support``; unknown if a part has none), not supported one part after Holm over the parts'
    ``p_refute`` (the smallest adjusted). Parts with neither p-value and an exact verdict (analytic) are exact."""
    from marginlab.analysis.significance import holm

    decs = [p.get("decision") or {} for p in parts]
    if all(d.get("deciding", "").startswith("analytic") for d in decs if d) and all(decs):
        return decision(verdict, None, None, decs[0].get("deciding", ""))
    sup = [d.get("p_support") for d in decs]
    p_sup = None if any(v is None for v in sup) or not sup else max(sup)
    ref = [d.get("p_refute") for d in decs if d.get("p_refute") is not None]
    p_ref = float(np.nanmin(holm(ref))) if ref else None
    return p_decision(verdict, p_sup, p_ref, "parts: supported needs every part (largest p_support); not supported "
                      "one part after Holm over the parts (smallest adjusted p_refute)", alpha)
