"""The decision rules behind the verdicts on the paper's five claims (``claims.json``), vectorised.

Every claim has ``parts``, each with its own ``verdict`` ∈ {``supported``, ``not supported``,
``inconclusive``}, ``rule``, ``numbers`` and ``decision`` (:mod:`.decision`: the p-values of both decisive
sides and their distances to the threshold); the report shows every part. The claim's combined ``verdict``
(kept for compatibility) is :func:`combine`: *supported* if every part is supported (intersection-union:
each part at its own level, no adjustment needed); *not supported* if a part is refuted after Holm's
adjustment over the parts that can be refuted (an "any part" conclusion needs family-wise control);
*inconclusive* otherwise. Missing data always gives *inconclusive*, with the reason. All levels are
α = 0.05 two-sided (95 % intervals).

**Seed-level interval rule** (claims 1a, 1b, 4a, 4b; :func:`seed_interval_rule`). The unit of replication
is the training seed: one reference AdaFace run per seed, each giving one estimate (a Spearman
correlation, a share gap, a mean log norm ratio). With k ≥ 2 runs: the mean over seeds, its Student-t 95 %
interval on k - 1 df and the t-test p-value against 0. *Supported* if the lower bound > 0 (one-sided
2.5 %); *not supported* if the upper bound < the smallest effect of interest (SESOI; equivalence-type: the
data exclude even a small effect in the claimed direction, and this takes precedence: a real but
negligible effect does not support the claim); *inconclusive* otherwise. SESOI: Spearman 0.1
(:data:`CORRELATION_EFFECT`, Cohen's "small"), share gap 0.10 (:data:`SHARE_EFFECT`, ≈ Cohen's h = 0.2),
norm reduction 0.02 in mean log ratio (:data:`NORM_CHANGE_EFFECT`, a 2 % lower norm). With k = 1 the rule
falls back to that run's own bootstrap interval and says so (it covers probe sampling only, not
seed-to-seed variation). The inverse-variance pooled estimate is shown as information only.
"What it could see": the smallest true mean the rule calls supported with 80 % power (noncentral t on
k - 1 df at the observed seed SD, :func:`.power.t_test_mde` one-sided).

**Difference rule** (claims 3 and 5; :func:`.significance.difference_test`, applied by
:func:`.claims.benchmark_claims.versus`). d = mean_a - mean_b with SE = s_p·sqrt(1/n_a + 1/n_b), s_p the seed SD pooled over every label on that protocol; *clear* when
|d|/SE exceeds the Student-t critical value on the pooled df Σ(n_i - 1), so the two-sided α is 0.05 at
any df (the former |d| > 2·SE had α ≈ 0.10 at df 5). With no repeated seeds the SE is the test-set
sampling error and the normal quantile is used (stated as ``noise_source`` = ``test set``; it ignores
training noise). The rule is pooled and unpaired on purpose: the seeds are paired across heads, but the
pooled SD borrows Σ(n_i - 1) df from every label, where a paired test has n_pairs - 1 (1 with two
seeds), and the unpaired test needs no assumption about the pairing correlation (it is conservative
when the correlation is positive). The paired t-test is in ``comparison.csv`` as a secondary analysis.
MDE: :func:`.power.t_test_mde` of this very test (noncentral t on those df at that SE, 80 % power).

The claims (:mod:`.claims`): :mod:`~.claims.probe_claims` (1 and 4), :mod:`~.claims.margin_form_claim` (2) and
:mod:`~.claims.benchmark_claims` (3 and 5), each assembled by :mod:`.claim_parts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from marginlab.analysis.significance import (
    critical_value,
    directional_p,
    dunnett_pvalues,
    holm,
)


VERDICTS = ("supported", "not supported", "inconclusive")
#: Family-wise two-sided level of every rule (95 % intervals).
ALPHA = 0.05
#: Smallest correlation worth calling one (Cohen's "small").
CORRELATION_EFFECT = 0.1
#: Smallest difference of augmented shares worth calling one (≈ Cohen's h = 0.2 around 50 %).
SHARE_EFFECT = 0.10
#: Smallest mean log(norm augmented / norm clean) reduction worth calling one: a 2 % lower norm, about
#: 0.15-0.2 of the between-image SD of log norms (coefficient of variation ≈ 0.10-0.15 in these runs).
NORM_CHANGE_EFFECT = 0.02


def combine(verdicts: Sequence[str], p_refute: Optional[Sequence[Optional[float]]] = None, alpha: float = ALPHA) -> str:
    """A claim's verdict from its parts' (module docstring).

    Supported if every part is (intersection-union); not supported if a part is refuted after Holm over
    the refutable parts: with ``p_refute`` (one per part, None where a part cannot be refuted or has no
    test), a "not supported" part counts only when its Holm-adjusted p ≤ ``alpha``; a "not supported"
    part without a p-value (exact, analytic) always counts. Inconclusive otherwise, or with no parts.
    """
    if not verdicts:
        return "inconclusive"
    if all(v == "supported" for v in verdicts):
        return "supported"
    p_refute = list(p_refute) if p_refute is not None else [None] * len(verdicts)
    ps = np.array([np.nan if p is None else float(p) for p in p_refute])
    adjusted = holm(ps) if np.isfinite(ps).any() else ps
    for v, p, adj in zip(verdicts, p_refute, adjusted):
        if v == "not supported" and (p is None or adj <= alpha):
            return "not supported"
    return "inconclusive"


def interval_verdict(los: Sequence[float], his: Sequence[float], effect: float) -> str:
    """One interval (or several that must all agree): not supported if every upper bound is below ``effect``
    (precedence: the data exclude even a small effect), supported if every lower bound is above 0, else
    inconclusive (also without finite intervals)."""
    los, his = np.asarray(los, dtype=np.float64), np.asarray(his, dtype=np.float64)
    if los.size == 0 or not (np.isfinite(los).all() and np.isfinite(his).all()):
        return "inconclusive"
    if (his < effect).all():
        return "not supported"
    if (los > 0).all():
        return "supported"
    return "inconclusive"


def seed_interval_rule(estimates, effect: float, alpha: float = ALPHA) -> dict[str, Any]:
    """The seed-level interval rule on ``estimates[..., k]`` (k seeds, k ≥ 2; vectorised over leading axes).

    Mean, SD (ddof 1), se = SD/√k, df = k - 1, the Student-t interval mean ± t_{1-α/2, df}·se, ``p_value``
    (two-sided, against 0), ``p_support`` = 2·P(T > mean/se), ``p_refute`` = 2·P(T < (mean - effect)/se)
    (two-sided-equivalent, capped at 1) and ``verdict``: not supported if hi < ``effect``, else supported if
    lo > 0, else inconclusive.
    """
    x = np.asarray(estimates, dtype=np.float64)
    k = x.shape[-1]
    mean, sd = x.mean(axis=-1), x.std(axis=-1, ddof=1)
    se = sd / np.sqrt(k)
    df = k - 1
    crit = float(critical_value(df, alpha))
    lo, hi = mean - crit * se, mean + crit * se
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, te = mean / se, (mean - effect) / se
    verdict = np.where(hi < effect, "not supported", np.where(lo > 0, "supported", "inconclusive"))
    verdict = np.where(np.isfinite(lo) & np.isfinite(hi), verdict, "inconclusive")
    return {"mean": mean, "sd": sd, "se": se, "df": df, "k": k, "crit": crit, "lo": lo, "hi": hi,
            "p_value": directional_p(np.abs(t0), df), "p_support": directional_p(t0, df, 1.0),
            "p_refute": directional_p(te, df, -1.0), "verdict": verdict}


def best_setting_rule(t, df, alpha: float = ALPHA) -> dict[str, Any]:
    """Claim 3's part rule on ``t[..., m]`` = (best - other_i)/SE (vectorised).

    Supported if every comparison is clearly in the best setting's favour (t_i > t_{1-α/2, df}; intersection-
    union, unadjusted); not supported if any other setting is clearly better after Holm over the m two-sided
    p-values (t_i < 0 and adjusted p ≤ α); inconclusive otherwise. Returns ``verdict``, ``p_holm``,
    ``p_support`` (largest directional p) and ``p_refute`` (smallest adjusted p of a comparison against).
    """
    t = np.asarray(t, dtype=np.float64)
    p = directional_p(np.abs(t), df)
    adj = holm(p)
    crit = critical_value(df, alpha)
    against = (t < 0) & (adj <= alpha)
    verdict = np.where(against.any(axis=-1), "not supported", np.where((t > crit).all(axis=-1), "supported", "inconclusive"))
    verdict = np.where(np.isfinite(t).all(axis=-1), verdict, "inconclusive")
    p_support = np.max(directional_p(t, df, 1.0), axis=-1)
    p_refute = np.min(np.where(t < 0, adj, 1.0), axis=-1)
    return {"verdict": verdict, "p_holm": adj, "p_support": p_support, "p_refute": p_refute}


def benchmark_pvalues(t, df, v_control: float, v_treatments, dunnett: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per benchmark, from ``t[..., k]`` = (AdaFace - baseline_i)/SE for its k baselines (vectorised):
    ``(p_better, p_worse)``, two-sided-equivalent. Better than every baseline: the largest unadjusted
    directional p (intersection-union); worse than some baseline: the smallest p of a comparison with t < 0,
    Dunnett-adjusted over the k baselines when ``dunnett`` (``v_*``: relative variances of the means, 1/n),
    else the plain two-sided p (k = 1, the pre-specified comparator)."""
    t = np.asarray(t, dtype=np.float64)
    p_better = np.max(directional_p(t, df, 1.0), axis=-1)
    p_two = dunnett_pvalues(t, df, v_control, v_treatments) if dunnett else directional_p(np.abs(t), df)
    p_worse = np.min(np.where(t < 0, p_two, 1.0), axis=-1)
    return p_better, p_worse


def low_quality_rule(p_better, p_worse, alpha: float = ALPHA) -> dict[str, Any]:
    """Claim 5a over the m low-quality benchmarks (``p_*[..., m]``, :func:`benchmark_pvalues`; vectorised).

    Each benchmark's p = min(p_better, p_worse) with its direction; Holm over the m benchmarks. Supported if
    AdaFace is significantly better on ≥ 1 benchmark and significantly worse on none; not supported if it is
    significantly worse on any; inconclusive otherwise."""
    pb, pw = np.asarray(p_better, dtype=np.float64), np.asarray(p_worse, dtype=np.float64)
    better_dir = pb <= pw
    adj = holm(np.minimum(pb, pw))
    better, worse = better_dir & (adj <= alpha), ~better_dir & (adj <= alpha)
    verdict = np.where(worse.any(axis=-1), "not supported", np.where(better.any(axis=-1), "supported", "inconclusive"))
    return {"verdict": verdict, "p_holm": adj, "better": better, "worse": worse,
            "p_support": np.min(np.where(better_dir, adj, 1.0), axis=-1),
            "p_refute": np.min(np.where(~better_dir, adj, 1.0), axis=-1)}


def noninferiority_rule(delta, se, df, margin: float, alpha: float = ALPHA) -> dict[str, Any]:
    """Claim 5b over m high-quality comparisons (``delta[..., m]`` = AdaFace - comparator, vectorised; ``df``
    a scalar or one per comparison, inf for test-set noise).

    Supported if the lower 95 % bound delta - t_{1-α/2, df}·se exceeds -``margin`` on every comparison
    (intersection-union, one-sided 2.5 % each); not supported if an upper bound lies below -``margin``
    after Holm over the m comparisons; inconclusive otherwise."""
    delta, se = np.asarray(delta, dtype=np.float64), np.asarray(se, dtype=np.float64)
    crit = critical_value(df, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_margin = (delta + margin) / se
    lo, hi = delta - crit * se, delta + crit * se
    p_ni = directional_p(t_margin, df, 1.0)
    adj = holm(directional_p(t_margin, df, -1.0))
    verdict = np.where((adj <= alpha).any(axis=-1), "not supported",
                       np.where((lo > -margin).all(axis=-1), "supported", "inconclusive"))
    verdict = np.where(np.isfinite(t_margin).all(axis=-1), verdict, "inconclusive")
    return {"verdict": verdict, "lo": lo, "hi": hi, "p_noninferior": p_ni, "p_inferior_holm": adj,
            "p_support": np.max(p_ni, axis=-1), "p_refute": np.min(adj, axis=-1)}
