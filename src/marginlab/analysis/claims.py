"""Verdicts on the paper's five claims (``claims.json``), each with the rule and the numbers that decide it.

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

**Difference rule** (claims 3 and 5; :func:`.significance.difference_test`). d = mean_a - mean_b with
SE = s_p·sqrt(1/n_a + 1/n_b), s_p the seed SD pooled over every label on that protocol; *clear* when
|d|/SE exceeds the Student-t critical value on the pooled df Σ(n_i - 1), so the two-sided α is 0.05 at
any df (the former |d| > 2·SE had α ≈ 0.10 at df 5). With no repeated seeds the SE is the test-set
sampling error and the normal quantile is used (stated as ``noise_source`` = ``test set``; it ignores
training noise). The rule is pooled and unpaired on purpose: the seeds are paired across heads, but the
pooled SD borrows Σ(n_i - 1) df from every label, where a paired test has n_pairs - 1 (1 with two
seeds), and the unpaired test needs no assumption about the pairing correlation (it is conservative
when the correlation is positive). The paired t-test is in ``comparison.csv`` as a secondary analysis.
MDE: :func:`.power.t_test_mde` of this very test (noncentral t on those df at that SE, 80 % power).

**Claim 2** is analytic, over a grid stated in advance (:data:`.gst.EMPHASIS_GRID`).
**Claim 3** holds Table 1's h, m and proxy ablations only: "every h beats CurricularFace" moved to claim 5
(AdaFace vs CurricularFace is counted in one claim only). **Claim 5** compares AdaFace with a comparator
fixed in ``analysis.comparator`` before looking (default CurricularFace, the paper's Tables 4-5
comparator), or with every baseline under a Dunnett adjustment; high-quality parity is a non-inferiority
test with the margin ``analysis.noninferiority_margin``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
import pandas as pd
from scipy import stats

from marginlab.analysis.decision import claim_decision, decision, interval_item, p_decision
from marginlab.analysis.paper_numbers import (
    ABLATION_CONCLUSIONS,
    FIG2_NORM_IQ_CORRELATION,
    IJB_TAR_1E4,
    PAPER_BEST,
    VERIFICATION,
)
from marginlab.analysis.power import ci_se, t_test_mde
from marginlab.analysis.progress import curve_rows, early_rows
from marginlab.analysis.significance import (
    critical_value,
    difference_noise,
    difference_test,
    directional_p,
    dunnett_pvalues,
    holm,
    pooled_df,
    pooled_std,
)
from marginlab.analysis.tables import decision_protocols, primary_low_quality_protocol

__all__ = [
    "ALPHA",
    "COMPARATORS",
    "CORRELATION_EFFECT",
    "NORM_CHANGE_EFFECT",
    "SHARE_EFFECT",
    "VERDICTS",
    "best_setting_rule",
    "benchmark_pvalues",
    "claim_ablations",
    "claim_augmentation",
    "claim_baselines",
    "claim_margin_form",
    "claim_norm_quality",
    "combine",
    "interval_verdict",
    "low_quality_rule",
    "noninferiority_rule",
    "seed_interval_rule",
]

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
#: ``analysis.comparator`` values: a baseline head (claim 5 compares AdaFace with it alone) or ``dunnett``.
COMPARATORS = ("curricularface", "cosface", "arcface", "magface", "normface", "dunnett")
_AUG_PAPER = "the paper's augmentation analysis: share of augmented samples among low- vs high-norm features"
_CODES = np.array(VERDICTS)


def _clean(value: Any) -> Any:
    """JSON-friendly numbers: NaN → None, numpy scalars → Python, rounded floats."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (np.str_,)):
        return str(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return None if not math.isfinite(v) else round(v, 6)
    return value


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


def _part(name: str, verdict: str, rule: str, numbers: Mapping[str, Any],
          decided: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """One part; ``decided``: its decision block (:func:`.decision.p_decision`), None for no data."""
    out = {"name": name, "verdict": verdict, "rule": rule, "numbers": _clean(dict(numbers))}
    out["decision"] = _clean(dict(decided)) if decided is not None else None
    return out


def _claim(cid: int, title: str, statement: str, paper: str, parts: list[dict], rule: str,
           numbers: Mapping[str, Any] | None = None, note: str = "") -> dict[str, Any]:
    p_refute = [(p.get("decision") or {}).get("p_refute") for p in parts]
    verdict = combine([p["verdict"] for p in parts], p_refute)
    out = {"id": cid, "title": title, "statement": statement, "paper": paper, "verdict": verdict, "rule": rule,
           "numbers": _clean(dict(numbers or {})), "parts": parts,
           "decision": _clean(claim_decision(parts, verdict))}
    if note:
        out["note"] = note
    return out


_COMBINE_RULE = ("parts shown separately; combined: supported if every part is supported (intersection-union, no "
                 "adjustment); not supported if a part is refuted after Holm's adjustment over the refutable parts; "
                 "otherwise inconclusive")


# --------------------------------------------------------------------------- the seed-level interval rule
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


def _seed_part(name: str, estimates: Mapping[str, tuple[float, float, float]], effect: float, what: str,
               direction: float = 1.0, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A part decided by :func:`seed_interval_rule` over the runs' estimates ``{run: (est, lo, hi)}`` (lo/hi:
    the run's own bootstrap interval, NaN when none). ``direction`` -1: the claim is that the estimate is
    negative (the rule runs on -estimate); ``what`` names the estimate in the rule text."""
    rows = {r: e for r, e in estimates.items() if np.isfinite(e[0])}
    sign = "above 0" if direction > 0 else "below 0"
    bound = "lower" if direction > 0 else "upper"
    far = f"{effect:g}" if direction > 0 else f"-{effect:g}"
    rule = (f"seed-level (unit = training seed, one reference AdaFace run each): the mean of {what} over the k seeds "
            f"with its Student-t 95% CI on k-1 df; supported if the CI's {bound} bound is {sign}; not supported if "
            f"its other bound lies {'below' if direction > 0 else 'above'} {far} (the smallest effect of interest: "
            "the data exclude even a small effect; this takes precedence); otherwise inconclusive")
    numbers: dict[str, Any] = {**dict(extra or {}), "runs": {r: {"estimate": e, "ci": [lo, hi]} for r, (e, lo, hi) in rows.items()},
                               "smallest_effect": effect * direction}
    if not rows:
        return _part(name, "inconclusive", "no data: no finite estimate for the reference runs; " + rule, numbers)
    ests = np.array([e for e, _, _ in rows.values()])
    if len(rows) >= 2:
        res = seed_interval_rule(direction * ests, effect)
        lo, hi = (res["lo"], res["hi"]) if direction > 0 else (-res["hi"], -res["lo"])
        mde = t_test_mde(float(res["se"]), res["df"], sides=1)
        numbers["seed_level"] = {"k": res["k"], "mean": direction * float(res["mean"]), "sd": float(res["sd"]),
                                 "se": float(res["se"]), "df": res["df"], "t_crit": res["crit"], "ci": [float(lo), float(hi)],
                                 "p_value": float(res["p_value"]),
                                 "mde": mde * direction,
                                 "mde_note": "smallest true mean this rule calls supported with 80% power at the observed "
                                             "seed SD (noncentral t, one-sided 2.5%)"}
        pooled = _inverse_variance(rows)
        if pooled is not None:
            numbers["pooled_inverse_variance"] = {**pooled, "note": "information only (fixed effect over the runs' "
                                                                    "bootstrap SEs; ignores seed-to-seed variation)"}
        verdict = str(res["verdict"])
        decided = p_decision(verdict, float(res["p_support"]), float(res["p_refute"]),
                             "seed-level t test: p_support against 0, p_refute against the smallest effect")
        return _part(name, verdict, rule, numbers, decided)
    (run, (est, lo, hi)), = rows.items()
    rule = ("one seed: the interval covers probe sampling only, not seed-to-seed variation; the run's own bootstrap 95% "
            "CI replaces the seed-level t interval; " + rule)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return _part(name, "inconclusive", "no data: one seed and no interval for it; " + rule, numbers)
    lo_d, hi_d = (lo, hi) if direction > 0 else (-hi, -lo)
    verdict = interval_verdict([lo_d], [hi_d], effect)
    item = interval_item(direction * est, lo_d, hi_d, effect)
    z = float(stats.norm.isf(ALPHA / 2))
    se = item["se"]
    # two-sided-equivalent p of the bound's side, capped at 1 (2·sf of a negative statistic would exceed 1)
    p_sup = float(directional_p(lo_d / se + z, np.inf)) if np.isfinite(se) else None
    p_ref = float(directional_p((effect - hi_d) / se + z, np.inf)) if np.isfinite(se) else None
    numbers["single_run"] = {"run": run, "se": se, "mde": item["mde"] * direction,
                             "mde_note": "smallest true value one run's interval calls supported with 80% power"}
    return _part(name, verdict, rule, numbers,
                 p_decision(verdict, p_sup, p_ref, "one run's bootstrap interval (normal approximation of its p-values)"))


def _inverse_variance(rows: Mapping[str, tuple[float, float, float]]) -> Optional[dict[str, float]]:
    est = np.array([e for e, _, _ in rows.values()])
    se = np.array([float(ci_se(lo, hi)) for _, lo, hi in rows.values()])
    if not (np.isfinite(se).all() and (se > 0).all()):
        return None
    w = 1.0 / se**2
    return {"estimate": float((w * est).sum() / w.sum()), "se": float(1.0 / np.sqrt(w.sum()))}


# --------------------------------------------------------------------------- claim 1
def _whole(value: Any) -> Any:
    """A count read from a float column (step, images seen: NaN where unknown) as an int."""
    return int(value) if isinstance(value, (float, np.floating)) and float(value).is_integer() else value


def _early_place(early: pd.DataFrame) -> tuple[dict[str, Any], str]:
    """Where part b was measured: schedule, progress, step, images seen and epoch (one value when every run
    shares it, else the distinct values), and the same in words."""
    place = {}
    for key in ("schedule", "progress", "step", "images_seen", "epoch"):
        distinct = [_whole(v) for v in pd.unique(early[key])] if len(early) else []
        place[key] = (distinct[0] if len(distinct) == 1 else sorted(distinct, key=str)) if distinct else None
    if place["schedule"] == "epoch" and place["epoch"] == 1:
        return place, "end of epoch 1"
    if place["schedule"] == "progress" and not isinstance(place["step"], list) and place["step"] is not None:
        return place, f"step {int(place['step'])}, inside epoch 1 (no epoch-1 probe)"
    if place["schedule"] == "epoch" and not isinstance(place["epoch"], list) and place["epoch"] is not None:
        return place, f"epoch {int(place['epoch'])} (no epoch-1 probe)"
    return place, "per run"


def _curve(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Per probe point of the reference runs: the seed mean Spearman with its Student-t 95 % CI (one run: its
    own bootstrap interval)."""
    out = []
    if not len(rows):
        return out
    keys = rows.assign(_step=rows["step"].fillna(-1), _key=rows["schedule"].astype(str))
    for (_, schedule, epoch, _), g in keys.groupby(["progress", "_key", "epoch", "_step"], sort=True, dropna=False):
        first = g.iloc[0]
        point = {"schedule": schedule, "progress": first["progress"], "step": _whole(first["step"]),
                 "images_seen": _whole(first["images_seen"]), "epoch": _whole(epoch), "n_runs": len(g)}
        vals = g["spearman"].to_numpy(np.float64)
        vals = vals[np.isfinite(vals)]
        if len(vals) >= 2:
            res = seed_interval_rule(vals, CORRELATION_EFFECT)
            point.update(spearman_mean=float(res["mean"]), ci=[float(res["lo"]), float(res["hi"])],
                         p_value=float(res["p_value"]))
        elif len(vals) == 1:
            point.update(spearman_mean=float(vals[0]), ci=[float(g["spearman_lo"].iloc[0]), float(g["spearman_hi"].iloc[0])],
                         p_value=None)
        out.append(point)
    return out


def claim_norm_quality(
    correlation: pd.DataFrame,
    reference_runs: Sequence[str],
    pyi_nonlinearity: Mapping[str, Mapping[str, float]] | None = None,
    progress_correlation: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Claim 1: feature norm ~ IQ (final epoch and early), and a non-linear P_yi ~ IQ relation.

    ``correlation``: rows of ``correlation.csv``; ``reference_runs``: the reference AdaFace runs (one per seed);
    ``pyi_nonlinearity``: per run :func:`.correlation.nonlinearity_test` of final-epoch clean P_yi against the target;
    ``progress_correlation``: rows of ``correlation_progress.csv`` (part b's curve; the decision uses epoch 1,
    :func:`.progress.early_rows`). Parts a and b: the seed-level interval rule on the clean-probe Spearman
    (module docstring); part c: every run's cross-validated isotonic gain CI above 0 (cannot refute).
    """
    statement = ("The feature norm is a proxy for image quality: it correlates positively with the BRISQUE-based IQ "
                 "score, visibly early in training; P_yi relates to IQ non-linearly.")
    paper = f"Fig. 2; final-epoch correlation of norm and IQ about {FIG2_NORM_IQ_CORRELATION} (coefficient not stated)"
    rows = correlation[correlation["run"].isin(list(reference_runs)) & (correlation["pass"] == "clean")]
    target = "iq" if (rows["target"] == "iq").any() else ("gt_quality" if (rows["target"] == "gt_quality").any() else None)
    if target is None or not len(reference_runs):
        why = "no reference AdaFace run with probe tables" if not len(reference_runs) else "no quality target in the probe tables"
        parts = [_part(p, "inconclusive", f"no data: {why}", {}) for p in ("a: final epoch", "b: early", "c: P_yi non-linear")]
        return _claim(1, "Feature norm as a quality proxy", statement, paper, parts, _COMBINE_RULE)
    rows = rows[rows["target"] == target]
    norm_rows = rows[rows["quantity"] == "norm"]
    final = norm_rows.loc[norm_rows.groupby("run")["epoch"].idxmax()]
    select = lambda f: f[(f["pass"] == "clean") & (f["target"] == target) & (f["quantity"] == "norm")]  # noqa: E731
    early = select(early_rows(correlation, progress_correlation, reference_runs))
    curve = select(curve_rows(correlation, progress_correlation, reference_runs))
    place, where = _early_place(early)
    target_name = "IQ = 1 - BRISQUE/100" if target == "iq" else "ground-truth quality (no IQ scores available)"

    def per_run(frame: pd.DataFrame, *at: str) -> dict[str, Any]:
        return {r.run: {**{k: _whole(getattr(r, k)) for k in ("epoch", *at)}, "spearman": r.spearman,
                        "spearman_ci": [r.spearman_lo, r.spearman_hi],
                        "pearson": r.pearson, "pearson_ci": [r.pearson_lo, r.pearson_hi], "n": r.n}
                for r in frame.itertuples(index=False)}

    def estimates(frame: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
        return {r.run: (r.spearman, r.spearman_lo, r.spearman_hi) for r in frame.itertuples(index=False)}

    what = f"the clean-probe Spearman(norm, {target}) per run"
    a = _seed_part("a: final epoch", estimates(final), CORRELATION_EFFECT, what + " at its final epoch",
                   extra={"target": target, "per_run": per_run(final), "paper_correlation": FIG2_NORM_IQ_CORRELATION})
    b = _seed_part(f"b: early ({where})", estimates(early), CORRELATION_EFFECT,
                   what + " at the end of epoch 1 (the first full pass over the training data, the paper's epoch 1; a "
                   "run without an epoch-1 probe uses its last progress probe inside epoch 1, else its earliest trained "
                   "epoch; step 0 never)",
                   extra={"target": target, "per_run": per_run(early, "schedule", "progress", "step", "images_seen"),
                          "curve": _curve(curve),
                          "curve_note": "every probe point of the reference runs (progress probes and epoch ends); the "
                                        "decision uses the end of epoch 1 only"})
    parts = [a, b]
    tests = {r: dict(g) for r, g in (pyi_nonlinearity or {}).items() if r in set(reference_runs)}
    c_rule = ("supported if, for every reference run at the final epoch, a monotone (isotonic) fit of P_yi on the target "
              "predicts held-out images better than a straight line: the bootstrap 95% CI of the 5-fold "
              "cross-validated gain 1 - MSE_monotone / MSE_linear lies above 0 (every run: intersection-union); "
              "otherwise inconclusive (a linear-looking relation at this sample size does not refute the figure)")
    pyi_final = rows[rows["quantity"] == "p_yi"]
    pyi_final = pyi_final.loc[pyi_final.groupby("run")["epoch"].idxmax()] if len(pyi_final) else pyi_final
    if tests:
        los = np.array([g["lo"] for g in tests.values()], dtype=float)
        c_verdict = "supported" if np.isfinite(los).all() and (los > 0).all() else "inconclusive"
        z = float(stats.norm.isf(ALPHA / 2))
        # the estimate lo + z·SE over its SE, as a two-sided-equivalent p in the claimed direction (capped at 1)
        p_sups = [directional_p(g["lo"] / float(ci_se(g["lo"], g["hi"])) + z, np.inf) for g in tests.values()]
        c_dec = p_decision(c_verdict, float(max(p_sups)) if np.isfinite(p_sups).all() else None, None,
                           "every run's gain interval (largest p_support); cannot be refuted")
        c = _part("c: P_yi non-linear", c_verdict, c_rule,
                  {"target": target, "nonlinearity": tests, "runs": per_run(pyi_final)}, c_dec)
    else:
        c = _part("c: P_yi non-linear", "inconclusive", "no data: no P_yi measurements for the reference runs; " + c_rule,
                  {"target": target})
    parts.append(c)
    numbers = {
        "target": target_name,
        "final_spearman_mean": float(final["spearman"].mean()),
        "final_pearson_mean": float(final["pearson"].mean()),
        **{f"early_{k}": v for k, v in place.items()},
        "early_spearman_mean": float(early["spearman"].mean()) if len(early) else None,
        "paper_correlation": FIG2_NORM_IQ_CORRELATION,
    }
    return _claim(1, "Feature norm as a quality proxy", statement, paper, parts, _COMBINE_RULE, numbers)


# --------------------------------------------------------------------------- claim 2
def claim_margin_form(adaface_params: Mapping[str, float]) -> dict[str, Any]:
    """Claim 2 (analytic): AdaFace's |GST| favours hard samples at high norm and disfavours them at low norm.

    The emphasis ratio R = |g(hard)| / |g(easy)| (:func:`marginlab.analysis.gst.emphasis`; autograd through the
    head code) of AdaFace with ``adaface_params`` at ẑ = +1 (high norm) and ẑ = -1 (low norm), evaluated over
    the grid stated in advance, :data:`.gst.EMPHASIS_GRID`: every (easy cos θ_y ∈ {0.3 … 0.7}, hard cos θ_y ∈
    {-0.4 … 0.0}) pair at cos θ_j ∈ {0, 0.2, 0.4} — 75 comparisons. The paper's ordering is R(+1) > 1 and
    R(-1) < 1.

    Rule, fixed before the grid was evaluated: a grid point counts only where neither sample's softmax is
    saturated at either ẑ (1 - P_y ≥ :data:`.gst.SATURATION` = 0.01): a saturated sample's |GST| is set by
    how deep it sits in the softmax tail at s = 64 (a factor exp(-s·Δcos)), not by the margin form the claim
    is about. *Supported* if the ordering holds at every unsaturated point; *not supported* if it fails at
    more than half of them; *inconclusive* otherwise (it holds in part of the plane) or with no unsaturated
    point. The share over all 75 points and over the unsaturated ones is shown either way, with the ratios
    at the named example points (:data:`.gst.EASY_POINT` / :data:`.gst.HARD_POINT`) and CosFace/ArcFace
    for contrast.
    """
    from marginlab.analysis.gst import EASY_POINT, EMPHASIS_GRID, HARD_POINT, SATURATION, emphasis, emphasis_grid

    statement = ("The margin form decides which samples are emphasised: AdaFace emphasises hard samples when the "
                 "feature norm is high and de-emphasises them when it is low (Fig. 3, |GST|).")
    rule = ("over the pre-stated grid of (easy cos θ_y, hard cos θ_y, cos θ_j) = "
            f"{list(EMPHASIS_GRID['easy_cos_target'])} × {list(EMPHASIS_GRID['hard_cos_target'])} × "
            f"{list(EMPHASIS_GRID['cos_nontarget'])} (75 points), R = |GST(hard)| / |GST(easy)|: supported if R(ẑ=+1) > 1 "
            f"and R(ẑ=-1) < 1 at every point where neither sample's softmax is saturated (1 - P_y ≥ {SATURATION:g} at "
            "both ẑ); not supported if the ordering fails at more than half of those points; otherwise inconclusive")
    params = {k: float(v) for k, v in adaface_params.items() if k in ("s", "m", "h", "t_alpha")}
    ratios = {f"adaface z_hat={z:+g}": emphasis("adaface", {"z_hat": z}, hyperparameters=params) for z in (1.0, -1.0)}
    ratios.update({head: emphasis(head) for head in ("cosface", "arcface")})
    grid = emphasis_grid("adaface", [{"z_hat": 1.0}, {"z_hat": -1.0}], hyperparameters=params)
    holds = ((grid["R[z_hat=1]"] > 1) & (grid["R[z_hat=-1]"] < 1)).to_numpy()
    saturated = (grid["saturated[z_hat=1]"] | grid["saturated[z_hat=-1]"]).to_numpy()
    n_open = int((~saturated).sum())
    n_hold_open = int(holds[~saturated].sum())
    if n_open == 0:
        verdict = "inconclusive"
    elif n_hold_open == n_open:
        verdict = "supported"
    elif n_open - n_hold_open > n_open / 2:
        verdict = "not supported"
    else:
        verdict = "inconclusive"
    by_j = {f"cos θ_j={j:g}": {"holds": int(holds[grid["cos_nontarget"].to_numpy() == j].sum()),
                               "points": int((grid["cos_nontarget"].to_numpy() == j).sum()),
                               "unsaturated": int((~saturated[grid["cos_nontarget"].to_numpy() == j]).sum()),
                               "holds_unsaturated": int((holds & ~saturated)[grid["cos_nontarget"].to_numpy() == j].sum())}
            for j in EMPHASIS_GRID["cos_nontarget"]}
    numbers = {"adaface_params": params, "grid_points": len(grid), "holds": int(holds.sum()),
               "share_holds": float(holds.mean()), "unsaturated_points": n_open, "holds_unsaturated": n_hold_open,
               "share_holds_unsaturated": n_hold_open / n_open if n_open else None, "by_cos_nontarget": by_j,
               "failures_unsaturated": [[float(r.easy_cos_target), float(r.hard_cos_target), float(r.cos_nontarget)]
                                        for r, h, s in zip(grid.itertuples(index=False), holds, saturated) if not h and not s],
               "easy_point": list(EASY_POINT), "hard_point": list(HARD_POINT), "ratios": ratios}
    part = _part("a: emphasis over the grid", verdict, rule, numbers,
                 decision(verdict, None, None, "analytic: exact, no sampling noise"))
    return _claim(2, "Margin form controls sample emphasis", statement, "Fig. 3 and issue #24", [part],
                  "the single part's verdict", note="analytic: evaluates the margin function through the head code over a "
                  "stated grid; no training data involved")


# --------------------------------------------------------------------------- differences (claims 3 and 5)
def _entry(at: pd.DataFrame, label: str) -> dict[str, Any]:
    """``label, mean, n_seeds, se`` of one label from an aggregate frame indexed by label."""
    row = at.loc[label]
    return {"label": label, "mean": float(row["mean"]), "n_seeds": int(row["n_seeds"]), "se": float(row["se"])}


def _versus(agg: pd.DataFrame, protocol: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """mean_a - mean_b on ``protocol``: the difference rule (module docstring) with its MDE."""
    on = agg[agg["protocol"] == protocol]
    s = pooled_std(on["std"], on["n_seeds"])
    se, source = difference_noise(int(a["n_seeds"]), int(b["n_seeds"]), s, float(a["se"]), float(b["se"]))
    df = float(pooled_df(on["n_seeds"], on["std"])) if source == "seeds" else math.inf
    d = float(a["mean"] - b["mean"])
    test = difference_test(d, se, df)
    return {"a": a["label"], "b": b["label"], "mean_a": a["mean"], "mean_b": b["mean"], "n_a": int(a["n_seeds"]),
            "n_b": int(b["n_seeds"]), "delta": d, "noise_se": se, "noise_source": source, "seed_std_pooled": s,
            "df": df if np.isfinite(df) else None,
            "criterion": ("Student t on the pooled df" if source == "seeds" else
                          "normal quantile: only test-set noise (no repeated seeds), which ignores training noise"),
            "t": test["t"], "t_crit": test["crit"], "p_value": test["p_value"], "ci": [test["ci_lo"], test["ci_hi"]],
            "judgement": test["judgement"], "mde": t_test_mde(se, df) if np.isfinite(se) else float("nan")}


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


def _matches(factor: str, setting: str) -> bool:
    value = setting.partition("=")[2]
    best = PAPER_BEST[factor]
    if isinstance(best, str):
        return value == best
    try:
        return abs(float(value) - best) < 0.011
    except ValueError:
        return False


def claim_ablations(ablation: pd.DataFrame, agg: pd.DataFrame) -> dict[str, Any]:
    """Claim 3 (Table 1): h = 0.33 is the best h, m = 0.4 the best m, the norm the best proxy.

    ``ablation``: rows of ``ablation.csv``; ``agg``: :func:`.tables.aggregate` of all runs (for the pooled
    seed std and test-set errors). Decided on the primary low-quality protocol
    (:func:`.tables.primary_low_quality_protocol`), one part per factor, :func:`best_setting_rule` on the
    difference rule's t statistics. The paper's "every h beats CurricularFace" is not tested here: AdaFace vs
    CurricularFace belongs to claim 5, so no comparison is counted in two claims.
    """
    statement = (f"Ablations (Table 1): h = {PAPER_BEST['h']:.2f} is the best h; m = {PAPER_BEST['m']:g} (the paper's "
                 f"choice) is the best m; the feature {PAPER_BEST['proxy']} is the best quality proxy. (Table 1's 'every "
                 "h beats CurricularFace' is tested in claim 5, AdaFace vs CurricularFace, not counted twice.)")
    paper = "Table 1 (numbers not available): " + "; ".join(f"{k}: {v}" for k, v in ABLATION_CONCLUSIONS.items())
    if ablation.empty:
        parts = [_part(f"{f}: paper's best", "inconclusive", "no data: no runs tagged ablation_" + f, {}) for f in ("h", "m", "proxy")]
        return _claim(3, "Ablations of h, m and the proxy", statement, paper, parts, _COMBINE_RULE)
    quality = dict(zip(agg["protocol"], agg["quality"]))
    protocol = primary_low_quality_protocol(ablation["set"], quality)
    if protocol is None:
        parts = [_part("all", "inconclusive", "no data: no low-quality protocol among the ablation results", {})]
        return _claim(3, "Ablations of h, m and the proxy", statement, paper, parts, _COMBINE_RULE)
    at = agg[agg["protocol"] == protocol].set_index("label")
    rows = ablation[ablation["set"] == protocol]
    parts = []
    for factor in ("h", "m", "proxy"):
        f_rows = rows[rows["factor"] == factor].drop_duplicates("label")
        best_rule = (f"difference rule on {protocol} (pooled-seed-SD Student t, α = 0.05 two-sided): supported if the "
                     f"paper's best setting ({factor}={PAPER_BEST[factor]}) is clearly better than every other {factor} "
                     "setting (each at α, intersection-union); not supported if any other setting is clearly better "
                     "after Holm over this part's comparisons; otherwise inconclusive")
        best = [r for r in f_rows.itertuples(index=False) if _matches(factor, r.setting) and r.label in at.index]
        others = [r for r in f_rows.itertuples(index=False) if not _matches(factor, r.setting) and r.label in at.index]
        if f_rows.empty:
            parts.append(_part(f"{factor}: paper's best", "inconclusive", f"no data: no runs tagged ablation_{factor}", {}))
            continue
        if not best or not others:
            why = "the paper's best setting was not run" if not best else "no other setting was run"
            parts.append(_part(f"{factor}: paper's best", "inconclusive", f"no data: {why}; " + best_rule,
                               {"protocol": protocol, "settings": {r.setting: r.mean for r in f_rows.itertuples(index=False)}}))
            continue
        comps = [dict(_versus(agg, protocol, _entry(at, best[0].label), _entry(at, o.label)), setting=o.setting)
                 for o in others]
        t = np.array([c["t"] for c in comps])
        df = comps[0]["df"] if comps[0]["df"] is not None else math.inf
        res = best_setting_rule(t, df)
        for c, adj in zip(comps, res["p_holm"]):
            c["p_holm"] = float(adj)
        verdict = str(res["verdict"])
        parts.append(_part(f"{factor}: paper's best", verdict, best_rule,
                           {"protocol": protocol, "best_setting": best[0].setting, "comparisons": comps},
                           p_decision(verdict, float(res["p_support"]), float(res["p_refute"]),
                                      "supported: the least clear comparison; not supported: the clearest Holm-adjusted "
                                      "comparison against")))
    return _claim(3, "Ablations of h, m and the proxy", statement, paper, parts, _COMBINE_RULE, {"protocol": protocol})


# --------------------------------------------------------------------------- claim 4
def claim_augmentation(gaps: Mapping[str, Mapping[str, float]], norm_changes: Mapping[str, pd.DataFrame] | None = None,
                       bins: int = 5) -> dict[str, Any]:
    """Claim 4: low-norm features are more often augmented.

    ``gaps``: per reference run :func:`.augmentation.low_high_gap` (last epoch); ``norm_changes``: per run
    :func:`.augmentation.norm_change`. Part a (the paper's analysis): the seed-level interval rule on the
    per-run gap share_any(lowest norm bin) - share_any(highest), SESOI 0.10. Part b (paired, within image):
    the seed-level rule on the per-run mean log(norm augmented / norm clean) over the images that were
    augmented (``norm_change``'s ``any`` row): supported if the CI's upper bound < 0 (augmented images have
    lower norms); not supported if its lower bound > -0.02 (the data exclude even a 2 % mean reduction,
    :data:`NORM_CHANGE_EFFECT`); inconclusive otherwise. With one seed: that run's own bootstrap interval of its
    mean log ratio (``mean_log_ratio_lo``/``_hi``; inconclusive when ``norm_change`` gives none).
    """
    statement = ("Augmented samples (crop, low resolution, photometric) are over-represented among low-norm features "
                 "and under-represented among high-norm ones; augmented images get lower norms than their clean versions.")
    title = "Augmentation and the norm"
    what_a = (f"share_any(lowest of {bins} norm bins) - share_any(highest bin) on the augmented probe pass at the last "
              "epoch, per run")
    if not gaps:
        a = _part("a: low vs high norm", "inconclusive", "no data: no augmented probe rows for the reference runs", {})
    else:
        a = _seed_part("a: low vs high norm", {r: (g["gap"], g["lo"], g["hi"]) for r, g in gaps.items()}, SHARE_EFFECT,
                       what_a, extra={"per_run": {r: dict(g) for r, g in gaps.items()}})
    changes = {}
    for r, f in (norm_changes or {}).items():
        row = f[f["augmentation"] == "any"] if "augmentation" in f else f.iloc[:0]
        if len(row) and int(row["n"].iloc[0]) > 0:
            lo = float(row["mean_log_ratio_lo"].iloc[0]) if "mean_log_ratio_lo" in row else np.nan
            hi = float(row["mean_log_ratio_hi"].iloc[0]) if "mean_log_ratio_hi" in row else np.nan
            changes[r] = (float(row["mean_log_ratio"].iloc[0]), lo, hi)
    what_b = "the mean log(norm augmented / norm clean) over each run's augmented probe images (same image, paired)"
    by_group = {r: {row.augmentation: {"n": row.n, "mean_log_ratio": row.mean_log_ratio, "median_ratio": row.median_ratio}
                    for row in f.itertuples(index=False)} for r, f in (norm_changes or {}).items()}
    if changes:
        b = _seed_part("b: paired norm change", changes, NORM_CHANGE_EFFECT, what_b, direction=-1.0,
                       extra={"by_augmentation": by_group})
    else:
        why = "no paired norm changes for the reference runs"
        b = _part("b: paired norm change", "inconclusive", f"no data: {why}; seed-level t rule on {what_b}",
                  {"by_augmentation": by_group})
    return _claim(4, title, statement, _AUG_PAPER, [a, b], _COMBINE_RULE)


# --------------------------------------------------------------------------- claim 5
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


def claim_baselines(agg: pd.DataFrame, reference: str | None, baselines: Sequence[str],
                    comparator: str = "curricularface", margin: float = 1.0) -> dict[str, Any]:
    """Claim 5: AdaFace gains on low/mixed-quality benchmarks while matching the baselines on high-quality ones.

    ``agg``: :func:`.tables.aggregate` over the compared labels; ``baselines``: the other main labels;
    ``comparator``: ``analysis.comparator`` — a baseline head fixed in advance (default CurricularFace, the
    paper's Tables 4-5 comparator; its first label among ``baselines``), or ``dunnett`` (every baseline, with
    Dunnett's many-to-one adjustment within a benchmark); a comparator head that is not in the grid makes both
    parts inconclusive (no post-hoc substitute). ``margin``: ``analysis.noninferiority_margin`` (points).
    Per benchmark (each verification set; IJB TAR@FAR=1e-4 or the lowest supported FAR; identification
    rank-1) the difference rule (module docstring). 5a: :func:`low_quality_rule` (Holm over the low-quality
    benchmarks); 5b: :func:`noninferiority_rule` on the high-quality benchmarks.
    """
    statement = ("AdaFace beats the baselines on low/mixed-quality benchmarks while matching them on high-quality ones.")
    paper = (f"Tables 3-5: e.g. IJB-C TAR@1e-4 {IJB_TAR_1E4['adaface']['ijbc']:.2f} vs "
             f"{IJB_TAR_1E4['curricularface']['ijbc']:.2f} (CurricularFace); LFW {VERIFICATION['adaface']['lfw']:.2f} "
             "(all methods within ~0.1)")
    dunnett = comparator == "dunnett"
    against = ("every baseline (Dunnett's many-to-one adjustment within a benchmark)" if dunnett
               else f"the pre-specified comparator {comparator} (analysis.comparator)")
    method = (f"Per benchmark AdaFace is compared with {against} by the difference rule (pooled-seed-SD Student t, "
              "α = 0.05 two-sided). ")
    a_rule = method + ("Holm over the low-quality benchmarks: supported if AdaFace is significantly better on at least "
                       "one low-quality benchmark" + (" (better than every baseline there)" if dunnett else "") +
                       " and significantly worse on none; not supported if significantly worse on any; otherwise "
                       "inconclusive")
    b_rule = method + (f"Non-inferiority with margin δ = {margin:g} points (analysis.noninferiority_margin): supported if "
                       "the lower 95% bound of AdaFace - comparator exceeds -δ on every high-quality benchmark"
                       + (" and baseline" if dunnett else "") + "; not supported if an upper bound lies below -δ (Holm "
                       "over the comparisons); otherwise inconclusive")
    title = "Gains on low-quality benchmarks"
    names = ("a: gains on low quality", "b: non-inferior on high quality")
    baselines = [b for b in baselines if b != reference]
    heads = dict(zip(agg["label"], agg["head"])) if "head" in agg else {}
    if not dunnett:
        chosen = [b for b in baselines if heads.get(b, b) == comparator]
        compared = chosen[:1]
    else:
        compared = list(baselines)
    why = None
    if reference is None or agg[agg["label"] == reference].empty:
        why = "no reference AdaFace results"
    elif not baselines:
        why = "no baseline results"
    elif not compared:
        why = (f"the pre-specified comparator head {comparator!r} (analysis.comparator) is not in the grid; no other "
               "baseline is picked after the fact")
    if why:
        return _claim(5, title, statement, paper, [_part(names[0], "inconclusive", f"no data: {why}; " + a_rule, {}),
                                                   _part(names[1], "inconclusive", f"no data: {why}; " + b_rule, {})],
                      _COMBINE_RULE, {"reference": reference, "comparator": comparator})
    ref = agg[agg["label"] == reference].set_index("protocol")
    pooled_on = agg[agg["label"].isin([reference, *baselines])]
    low, high = [], []
    for protocol in decision_protocols(list(ref.index)):
        at = agg[agg["protocol"] == protocol].set_index("label")
        present = [b for b in compared if b in at.index and np.isfinite(at.loc[b, "mean"])]
        if not present:
            continue
        entries = []
        for b in present:
            e = _versus(pooled_on, protocol, _entry(at, reference), _entry(at, b))
            e.update(protocol=protocol, quality=ref.loc[protocol, "quality"], comparator=b)
            entries.append(e)
        (low if entries[0]["quality"] == "low" else high if entries[0]["quality"] == "high" else []).append(entries)
    numbers = {"reference": reference, "comparator": comparator, "compared_labels": compared,
               "noninferiority_margin": margin,
               "mean_gain_low_quality": float(np.mean([e["delta"] for es in low for e in es])) if low else None,
               "mean_gain_high_quality": float(np.mean([e["delta"] for es in high for e in es])) if high else None}
    if not dunnett and len([b for b in baselines if heads.get(b, b) == comparator]) > 1:
        numbers["comparator_note"] = f"several {comparator} labels; the first listed is the comparator"
    # 5a
    if not low:
        a = _part(names[0], "inconclusive", "no data: no low-quality benchmark; " + a_rule, {})
    elif any(not np.isfinite(e["t"]) for es in low for e in es):
        a = _part(names[0], "inconclusive", "no data: no noise estimate; " + a_rule, {"comparisons": [e for es in low for e in es]})
    else:
        pb, pw = [], []
        for es in low:
            df = es[0]["df"] if es[0]["df"] is not None else math.inf
            b_, w_ = benchmark_pvalues([e["t"] for e in es], df, 1.0 / es[0]["n_a"], [1.0 / e["n_b"] for e in es], dunnett)
            pb.append(float(b_))
            pw.append(float(w_))
            for e, pd_ in zip(es, dunnett_pvalues([x["t"] for x in es], df, 1.0 / es[0]["n_a"], [1.0 / x["n_b"] for x in es])
                              if dunnett else [None] * len(es)):
                if pd_ is not None:
                    e["p_dunnett"] = float(pd_)
        res = low_quality_rule(np.array(pb), np.array(pw))
        benchmarks = {es[0]["protocol"]: {"p_better": p1, "p_worse": p2, "p_holm": float(adj),
                                          "significant": "better" if bt else "worse" if wt else "no"}
                      for es, p1, p2, adj, bt, wt in zip(low, pb, pw, res["p_holm"], res["better"], res["worse"])}
        verdict = str(res["verdict"])
        a = _part(names[0], verdict, a_rule, {"benchmarks": benchmarks, "comparisons": [e for es in low for e in es]},
                  p_decision(verdict, float(res["p_support"]), float(res["p_refute"]),
                             "Holm-adjusted p of the clearest low-quality gain / loss"))
    # 5b
    flat = [e for es in high for e in es]
    if not flat:
        b = _part(names[1], "inconclusive", "no data: no high-quality benchmark; " + b_rule, {})
    elif any(not np.isfinite(e["noise_se"]) for e in flat):
        b = _part(names[1], "inconclusive", "no data: no noise estimate; " + b_rule, {"comparisons": flat})
    else:
        dfs = np.array([e["df"] if e["df"] is not None else math.inf for e in flat])
        res = noninferiority_rule([e["delta"] for e in flat], [e["noise_se"] for e in flat], dfs, margin)
        for j, e in enumerate(flat):
            e.update(ni_ci=[float(res["lo"][j]), float(res["hi"][j])], p_noninferior=float(res["p_noninferior"][j]),
                     p_inferior_holm=float(res["p_inferior_holm"][j]), ni_mde_margin=t_test_mde(e["noise_se"], dfs[j], sides=1))
        verdict = str(res["verdict"])
        b = _part(names[1], verdict, b_rule, {"margin": margin, "comparisons": flat,
                                              "ni_mde_note": "ni_mde_margin: the smallest margin this test would establish "
                                                             "with 80% power if the heads were truly equal"},
                  p_decision(verdict, float(res["p_support"]), float(res["p_refute"]),
                             "supported: the least clear non-inferiority; not supported: the clearest Holm-adjusted "
                             "inferiority"))
    return _claim(5, title, statement, paper, [a, b], _COMBINE_RULE, numbers)
