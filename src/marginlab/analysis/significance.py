"""Seed statistics and the tests behind the tables and claim verdicts.

- :func:`describe`: mean, sample standard deviation (ddof = 1; NaN for one seed) and count of the
  finite values of one configuration's seeds.
- :func:`paired_difference`: ``a - b`` over the seeds both configurations ran. With ≥ 2 paired seeds:
  the mean paired difference, its Student-t confidence interval and the two-sided paired t-test
  (``scipy.stats.ttest_rel``). Differences that are identical across seeds (up to float rounding,
  common with metrics counted on a small test set) leave no variance estimate: the t-test is
  undefined there, so CI and p are NaN and the test says why, rather than a p of 0 that claims
  certainty two seeds cannot give. With fewer than two pairs, test ``"n/a"`` and NaN.
- :func:`pooled_std`: the pooled seed standard deviation sqrt(Σ (n_i - 1) s_i² / Σ (n_i - 1)) over
  configurations with at least two seeds.
- :func:`difference_noise` and :func:`judge`: the rule used by the claim verdicts to call a difference
  between two configurations *clear*. The standard error of d = mean_a - mean_b is
  s_p · sqrt(1/n_a + 1/n_b) with the pooled seed std s_p of that protocol (seed-to-seed variation,
  the relevant noise); when no configuration has repeated seeds it falls back to the test-set
  sampling error sqrt(se_a² + se_b²) of the two estimates (optimistic: ignores training noise), and
  says so. A difference is clear when |d| > 2 · SE (about a two-sided 95 % normal criterion).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = [
    "CLEAR_Z", "IDENTICAL_DIFFERENCES", "PairedResult", "describe", "difference_noise", "judge", "paired_difference", "pooled_std",
]

#: A difference counts as clear beyond this many standard errors.
CLEAR_Z = 2.0

#: The test label of a paired comparison whose differences do not vary across seeds.
IDENTICAL_DIFFERENCES = "n/a: identical difference on every seed (no variance estimate)"

#: Differences closer than this (relative to their size) count as identical: percentages such as
#: 11/40·100 - 19/40·100 differ across seeds only by float rounding.
_IDENTICAL_RTOL = 1e-9


def describe(values: Iterable[float]) -> tuple[float, float, int]:
    """``(mean, std (ddof=1, NaN for n < 2), n)`` of the finite values; ``(NaN, NaN, 0)`` when none."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else np.nan, int(v.size)


@dataclass(frozen=True)
class PairedResult:
    delta: float
    ci_lo: float
    ci_hi: float
    p_value: float
    test: str
    n_pairs: int

    def as_dict(self) -> dict:
        return asdict(self)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95) -> PairedResult:
    """Mean of ``a[seed] - b[seed]`` over the seeds with finite values in both, CI and paired t-test."""
    seeds = sorted(s for s in set(a) & set(b) if np.isfinite(a[s]) and np.isfinite(b[s]))
    x = np.asarray([a[s] for s in seeds], dtype=np.float64)
    y = np.asarray([b[s] for s in seeds], dtype=np.float64)
    n = len(seeds)
    if n == 0:
        return PairedResult(np.nan, np.nan, np.nan, np.nan, "n/a", 0)
    d = x - y
    delta = float(d.mean())
    if n < 2:
        return PairedResult(delta, np.nan, np.nan, np.nan, "n/a", n)
    if np.ptp(d) <= _IDENTICAL_RTOL * max(1.0, float(np.abs(d).max())):
        return PairedResult(delta, np.nan, np.nan, np.nan, IDENTICAL_DIFFERENCES, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(x, y)
        ci = res.confidence_interval(confidence)
    return PairedResult(delta, float(ci.low), float(ci.high), float(res.pvalue), "paired t-test", n)


def pooled_std(stds: Iterable[float], ns: Iterable[int]) -> float:
    """Pooled standard deviation of groups with n ≥ 2 and a finite std; NaN when there are none."""
    num, den = 0.0, 0
    for s, n in zip(stds, ns):
        if n is not None and n >= 2 and s is not None and np.isfinite(s):
            num += (n - 1) * float(s) ** 2
            den += n - 1
    return float(np.sqrt(num / den)) if den else np.nan


def difference_noise(
    n_a: int, n_b: int, seed_std: float, se_a: float = np.nan, se_b: float = np.nan
) -> tuple[float, str]:
    """``(standard error of mean_a - mean_b, source)``; source ``"seeds"``, ``"test set"`` or ``"none"``."""
    if n_a >= 1 and n_b >= 1 and np.isfinite(seed_std):
        return float(seed_std * np.sqrt(1.0 / n_a + 1.0 / n_b)), "seeds"
    if np.isfinite(se_a) and np.isfinite(se_b):
        return float(np.hypot(se_a, se_b)), "test set"
    return np.nan, "none"


def judge(delta: float, noise: float, z: float = CLEAR_Z) -> str:
    """``"better"`` if delta > z·noise, ``"worse"`` if delta < -z·noise, ``"tie"`` otherwise; ``"unknown"`` without noise."""
    if not np.isfinite(delta) or not np.isfinite(noise):
        return "unknown"
    if delta > z * noise:
        return "better"
    if delta < -z * noise:
        return "worse"
    return "tie"
