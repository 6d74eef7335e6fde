"""How large an effect a comparison could see: minimum detectable effects and distances to thresholds.

A verdict of *inconclusive* means little unless it says what the study could have seen. For the two
rules the claims use:

- :func:`paired_t_mde`: the smallest true mean paired difference δ that a two-sided paired t-test at
  level ``alpha`` over ``n`` seeds detects with probability ``power``, when the per-seed differences
  have standard deviation ``sd``. Exact: the test statistic is noncentral t with ``n - 1`` degrees of
  freedom and noncentrality ``δ·√n / sd`` (``scipy.stats.nct``); power counts both tails, and δ is
  found by root finding. For large ``n`` it tends to ``(z_{1-α/2} + z_{power})·sd/√n``.
- :func:`t_test_power` / :func:`t_test_mde`: the same for the test the claims actually run — a
  Student-t criterion on an estimate with standard error ``se`` and ``df`` degrees of freedom (the
  pooled-seed-SD difference rule of claims 3 and 5, df = Σ (n_i - 1); the seed-level interval rules of
  claims 1 and 4, se = seed SD / √k, df = k - 1). The statistic is noncentral t with noncentrality
  δ / se (``scipy.stats.nct``). ``sides=2`` counts both rejection tails (a two-sided "clear difference");
  ``sides=1`` only the upper one (an interval's lower bound above 0, the directional rules). ``df`` = inf
  gives the normal limit (z_{1-α/2} + z_power)·se, used when only test-set noise (a known SE) exists.
  ``paired_t_mde(sd, n)`` equals ``t_test_mde(sd/√n, n - 1)``.
- :func:`clear_rule_mde`: the smallest true value a rule "estimate beyond z·SE" reaches with probability
  ``power``, treating the estimate as normal with a known SE: ``(z + Φ⁻¹(power))·SE`` (one run's own
  bootstrap interval, the single-seed fallback of the interval rules).
- :func:`seeds_for_mde`: the smallest number of seeds whose paired-t MDE is at most a target effect
  (how a study preset chooses its seed count from a measured seed spread).
- :func:`threshold_distance` and :func:`is_borderline`: how far a verdict's deciding number lies from
  its threshold in standard errors; within one standard error the verdict is *borderline* (it may
  flip on another machine, where float results differ).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

__all__ = ["BORDERLINE_SE", "ci_se", "clear_rule_mde", "is_borderline", "paired_t_mde", "paired_t_power",
           "seeds_for_mde", "t_test_mde", "t_test_power", "threshold_distance"]

#: A deciding number closer than this many standard errors to its threshold makes the verdict borderline.
BORDERLINE_SE = 1.0


def paired_t_power(delta: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Probability that the two-sided paired t-test at ``alpha`` rejects, true mean difference ``delta``."""
    if n < 2 or not np.isfinite(sd) or sd <= 0:
        return float("nan")
    df = n - 1
    crit = stats.t.ppf(1.0 - alpha / 2.0, df)
    nc = abs(delta) * math.sqrt(n) / sd
    upper = stats.nct.sf(crit, df, nc)
    lower = stats.nct.cdf(-crit, df, nc)  # the far tail: negligible, and scipy returns NaN where it underflows
    return float(upper + (0.0 if not np.isfinite(lower) else lower))


def paired_t_mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest δ ≥ 0 with :func:`paired_t_power` ≥ ``power`` (NaN for n < 2 or no spread estimate)."""
    if not 0.0 < alpha < 1.0 or not alpha < power < 1.0:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    if n < 2 or not np.isfinite(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    upper = sd
    while paired_t_power(upper, sd, n, alpha) < power:
        upper *= 2.0
    return float(optimize.brentq(lambda d: paired_t_power(d, sd, n, alpha) - power, 0.0, upper, xtol=1e-12 * sd))


def t_test_power(delta: float, se: float, df: float, alpha: float = 0.05, sides: int = 2) -> float:
    """P(reject) of the level-``alpha`` Student-t criterion |t| > t_{1-α/2, df} (``sides=2``: either tail;
    ``sides=1``: only t > t_{1-α/2, df}, a 95 % interval's lower bound above 0) at true effect ``delta``."""
    if not (np.isfinite(se) and se > 0) or not (df > 0):
        return float("nan")
    nc = abs(delta) / se
    if not np.isfinite(df):
        crit = stats.norm.isf(alpha / 2.0)
        return float(stats.norm.sf(crit - nc) + (stats.norm.cdf(-crit - nc) if sides == 2 else 0.0))
    crit = stats.t.isf(alpha / 2.0, df)
    upper = stats.nct.sf(crit, df, nc)
    lower = stats.nct.cdf(-crit, df, nc) if sides == 2 else 0.0
    return float(upper + (0.0 if not np.isfinite(lower) else lower))


def t_test_mde(se: float, df: float, alpha: float = 0.05, power: float = 0.8, sides: int = 2) -> float:
    """Smallest δ ≥ 0 with :func:`t_test_power` ≥ ``power``: the MDE of the test actually run (NaN without an SE)."""
    if not 0.0 < alpha < 1.0 or not alpha < power < 1.0:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    if not (np.isfinite(se) and se > 0) or not (df > 0):
        return float("nan")
    upper = se
    while t_test_power(upper, se, df, alpha, sides) < power:
        upper *= 2.0
    return float(optimize.brentq(lambda d: t_test_power(d, se, df, alpha, sides) - power, 0.0, upper, xtol=1e-12 * se))


def clear_rule_mde(se: float, z: float = 2.0, power: float = 0.8) -> float:
    """Smallest true difference the |d| > z·SE rule calls clear with probability ``power``: (z + Φ⁻¹(power))·SE."""
    if not np.isfinite(se):
        return float("nan")
    return float((z + stats.norm.ppf(power)) * se)


def seeds_for_mde(sd: float, target: float, alpha: float = 0.05, power: float = 0.8, n_max: int = 1000) -> int:
    """The smallest n ≥ 2 with ``paired_t_mde(sd, n) ≤ target``; ValueError if none up to ``n_max``."""
    if target <= 0 or not np.isfinite(sd) or sd < 0:
        raise ValueError(f"need a positive target effect and a finite seed spread, got target={target}, sd={sd}")
    for n in range(2, n_max + 1):
        if paired_t_mde(sd, n, alpha, power) <= target:
            return n
    raise ValueError(f"no n <= {n_max} detects {target} with sd {sd}")


def ci_se(lo, hi, confidence: float = 0.95):
    """The standard error a symmetric normal ``confidence`` interval [lo, hi] implies: width / (2·z) (arrays too)."""
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    return (np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)) / (2.0 * z)


def threshold_distance(value: float, threshold: float, se: float) -> float:
    """``(value - threshold) / se``: how many standard errors the deciding number lies past its threshold."""
    if not (np.isfinite(value) and np.isfinite(threshold) and np.isfinite(se)) or se <= 0:
        return float("nan")
    return float((value - threshold) / se)


def is_borderline(distance: float, within: float = BORDERLINE_SE) -> bool:
    """Whether a deciding number lies within ``within`` standard errors of its threshold (NaN: not known → False)."""
    return bool(np.isfinite(distance) and abs(distance) < within)
