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
- :func:`difference_noise`: the standard error of d = mean_a - mean_b that the claim verdicts use,
  s_p · sqrt(1/n_a + 1/n_b) with the pooled seed std s_p of that protocol (seed-to-seed variation,
  the relevant noise); when no configuration has repeated seeds it falls back to the test-set
  sampling error sqrt(se_a² + se_b²) of the two estimates (optimistic: ignores training noise), and
  says so. :func:`difference_test` calls a difference *clear* when |d| / SE exceeds the Student-t
  critical value on the pooled df (:func:`pooled_df`, :func:`critical_value`), so the two-sided α is
  0.05 at any df (the former |d| > 2·SE had 0.10 at df 5); :func:`holm` and :func:`dunnett_pvalues`
  adjust for several comparisons.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = [
    "IDENTICAL_DIFFERENCES", "PairedResult", "critical_value", "describe", "difference_noise", "difference_test",
    "directional_p", "dunnett_pvalues", "holm", "paired_difference", "pooled_df", "pooled_std",
]

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


# --------------------------------------------------------------------------- the claims' tests (vectorised)
def pooled_df(ns: Iterable[int], stds: Iterable[float] | None = None) -> int:
    """Degrees of freedom Σ (n_i - 1) of :func:`pooled_std` (groups with n ≥ 2 and a finite std)."""
    ns = list(ns)
    stds = list(stds) if stds is not None else [1.0] * len(ns)
    return int(sum(n - 1 for n, s in zip(ns, stds) if n is not None and n >= 2 and s is not None and np.isfinite(s)))


def critical_value(df, alpha: float = 0.05):
    """Two-sided critical value of a level-``alpha`` test: Student t on ``df`` degrees of freedom, the normal
    quantile where ``df`` is infinite or NaN (test-set noise: a known standard error). Arrays broadcast."""
    df = np.asarray(df, dtype=np.float64)
    normal = float(stats.norm.isf(alpha / 2.0))
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(df) & (df > 0), stats.t.isf(alpha / 2.0, np.where(np.isfinite(df) & (df > 0), df, 1.0)), normal)
    return out if out.ndim else float(out)


def directional_p(t, df, sign: float = 1.0):
    """``min(1, 2·P(T > sign·t))``: the two-sided-equivalent p-value of an effect in direction ``sign``
    (≤ α exactly when the two-sided level-α test rejects *and* the estimate lies on that side)."""
    t = np.asarray(t, dtype=np.float64) * sign
    df = np.asarray(df, dtype=np.float64)
    ok = np.isfinite(df) & (df > 0)
    with np.errstate(invalid="ignore"):
        tail = np.where(ok, stats.t.sf(t, np.where(ok, df, 1.0)), stats.norm.sf(t))
    out = np.minimum(1.0, 2.0 * tail)
    return out if out.ndim else float(out)


def difference_test(delta, se, df, alpha: float = 0.05) -> dict[str, Any]:
    """The difference rule of claims 3 and 5 (vectorised over arrays of ``delta``, ``se``, ``df``).

    ``t = delta / se``; clear when |t| exceeds the two-sided Student-t critical value on ``df`` degrees of
    freedom (the pooled seed SD's Σ (n_i - 1)), so the two-sided error rate is ``alpha`` at any df; with
    ``df`` = inf (only test-set noise, a known SE) the normal quantile. Returns ``t``, ``crit``,
    ``p_value`` (two-sided), ``ci`` (delta ± crit·se), ``judgement`` (better / worse / tie / unknown).
    """
    delta, se = np.asarray(delta, dtype=np.float64), np.asarray(se, dtype=np.float64)
    crit = np.asarray(critical_value(df, alpha))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, delta / se, np.nan)
    p = np.where(np.isfinite(t), directional_p(np.abs(t), df), np.nan)
    judgement = np.where(~np.isfinite(t), "unknown", np.where(t > crit, "better", np.where(t < -crit, "worse", "tie")))
    out = {"t": t, "crit": crit, "p_value": p, "ci_lo": delta - crit * se, "ci_hi": delta + crit * se,
           "judgement": judgement}
    if delta.ndim == 0:
        out = {k: (str(v) if k == "judgement" else float(v)) for k, v in out.items()}
    return out


def holm(pvalues, axis: int = -1) -> np.ndarray:
    """Holm's step-down adjusted p-values along ``axis`` (NaN stays NaN and is not counted in the family).

    Sorted ascending, p_(i) becomes max_{j ≤ i} min(1, (m - j + 1)·p_(j)); hypothesis i is rejected at
    family-wise level α exactly when its adjusted p ≤ α.
    """
    p = np.moveaxis(np.asarray(pvalues, dtype=np.float64), axis, -1)
    finite = np.isfinite(p)
    m = finite.sum(axis=-1, keepdims=True)
    filled = np.where(finite, p, np.inf)
    order = np.argsort(filled, axis=-1, kind="stable")
    sorted_p = np.take_along_axis(filled, order, axis=-1)
    rank = np.arange(p.shape[-1])
    with np.errstate(invalid="ignore"):
        scaled = np.where(np.isfinite(sorted_p), np.minimum(1.0, (m - rank) * np.where(np.isfinite(sorted_p), sorted_p, 0.0)), np.nan)
    adjusted_sorted = np.fmax.accumulate(np.nan_to_num(scaled, nan=-np.inf), axis=-1)
    adjusted_sorted = np.where(np.isfinite(sorted_p), adjusted_sorted, np.nan)
    out = np.empty_like(adjusted_sorted)
    np.put_along_axis(out, order, adjusted_sorted, axis=-1)
    return np.moveaxis(out, -1, axis)


_GH = np.polynomial.hermite_e.hermegauss(40)


def dunnett_pvalues(t, df, v_control: float, v_treatments, chunk: int = 256) -> np.ndarray:
    """Dunnett's many-to-one adjusted two-sided p-values from summary statistics (vectorised).

    ``t[..., i]``: the pooled t statistic of treatment i against the control (same pooled SD, ``df``
    degrees of freedom). p_i = P(max_j |T_j| ≥ |t_i|)
    under the joint null, where T is multivariate t with the many-to-one correlation
    λ_iλ_j, λ_i = sqrt(v_0 / (v_0 + v_i)) = sqrt(n_i / (n_i + n_0)) (the shared control mean). Computed exactly by the one-factor
    representation: given the control's standardised mean U and the SD ratio W = s/σ,
    P(|T_i| ≤ c) = Φ((cW + λ_i U)/a_i) - Φ((-cW + λ_i U)/a_i), a_i = sqrt(1 - λ_i²); the product over i is
    integrated over U ~ N(0, 1) (Gauss-Hermite) and W² ~ χ²_df/df (trapezoid on a log-spaced grid), W = 1 when
    ``df`` is infinite; with more than 1024 levels (simulations) the tail is computed on a fine grid of levels
    and interpolated log-linearly. ``v_control`` / ``v_treatments``: relative variances of the means (1/n).
    Checked against ``scipy.stats.dunnett`` on raw samples (tests).
    """
    from scipy import special

    t = np.abs(np.asarray(t, dtype=np.float64))
    v_t = np.asarray(v_treatments, dtype=np.float64)
    lam = np.sqrt(float(v_control) / (v_t + float(v_control)))
    a = np.sqrt(1.0 - lam**2)
    u, wu = _GH
    wu = wu / wu.sum()
    if np.isfinite(df) and df > 0:
        # W = sqrt(χ²_df / df) on a log-spaced grid between its 1e-8 and 1 - 1e-10 quantiles (trapezoid in log W,
        # which resolves the small-W region that decides far-tail p-values at small df)
        lo_w, hi_w = (np.sqrt(stats.chi2.ppf(q, df) / df) for q in (1e-8, 1.0 - 1e-10))
        w = np.geomspace(lo_w, hi_w, 96)
        log_step = np.log(w[1] / w[0])
        wy = 2.0 * df * w * w * stats.chi2.pdf(df * w * w, df) * log_step  # f_W(w)·w·Δlog w
        wy[[0, -1]] *= 0.5
        wy = wy / wy.sum()
    else:
        w, wy = np.ones(1), np.ones(1)
    flat = t.reshape(-1, t.shape[-1])
    levels = flat[np.isfinite(flat)]
    uu, ww = u[:, None, None], w[None, :, None]
    weights = wu[:, None] * wy[None, :]

    def tail(c: np.ndarray) -> np.ndarray:  # P(max_j |T_j| > c), one value per level
        out = np.empty(len(c))
        for start in range(0, len(c), chunk):
            level = c[start:start + chunk][:, None, None, None]
            prob = (special.ndtr((level * ww + lam * uu) / a) - special.ndtr((-level * ww + lam * uu) / a)).prod(axis=-1)
            out[start:start + chunk] = 1.0 - (prob * weights).sum(axis=(1, 2))
        return np.clip(out, 1e-300, 1.0)

    if levels.size > 1024:  # many levels (simulations): exact on a fine grid, log-linear interpolation between
        grid = np.linspace(0.0, float(levels.max()) + 1e-9, 1025)
        values = np.exp(np.interp(np.nan_to_num(flat, nan=0.0), grid, np.log(tail(grid))))
    else:
        values = tail(np.nan_to_num(flat, nan=0.0).ravel()).reshape(flat.shape)
    out = values
    # Dunnett's p lies between the unadjusted p and Bonferroni's k·p; the clip removes quadrature error only
    unadjusted = directional_p(flat, df)
    out = np.clip(out, unadjusted, np.minimum(1.0, flat.shape[-1] * unadjusted))
    out[~np.isfinite(flat)] = np.nan
    return out.reshape(t.shape)
