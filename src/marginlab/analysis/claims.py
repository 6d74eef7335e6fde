"""Verdicts on the paper's five claims (``claims.json``), each with the rule and the numbers that decide it.

Every claim gets ``verdict`` ∈ {``supported``, ``not supported``, ``inconclusive``}; claims with
several parts list them under ``parts`` (each with its own verdict, rule and numbers) and combine
them as: *not supported* if any part is not supported, *supported* if every part is, *inconclusive*
otherwise. Missing data always gives *inconclusive*, with the reason.

Interval rules (claims 1 and 4) follow an equivalence-test pattern: *supported* when the 95 % interval
of every reference run lies above 0; *not supported* when every run's interval lies below the
smallest effect worth calling an effect (correlation 0.1, Cohen's "small"; share difference 0.10,
about Cohen's h = 0.2), i.e. the data exclude even a small effect in the claimed direction;
*inconclusive* otherwise. Difference rules (claims 3 and 5) use :func:`.significance.judge`: a
difference is clear when it exceeds 2 standard errors (seed-to-seed noise, or test-set sampling
noise when no configuration has repeated seeds — reported as ``noise_source``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
import pandas as pd

from marginlab.analysis.paper_numbers import (
    ABLATION_CONCLUSIONS,
    FIG2_NORM_IQ_CORRELATION,
    IJB_TAR_1E4,
    PAPER_BEST,
    PAPER_EARLY_PROGRESS,
    VERIFICATION,
)
from marginlab.analysis.decision import all_of, any_of, comparison_sides, decision, interval_item, part_decision
from marginlab.analysis.power import clear_rule_mde, is_borderline, paired_t_mde
from marginlab.analysis.progress import early_rows
from marginlab.analysis.significance import CLEAR_Z, difference_noise, judge, pooled_std
from marginlab.analysis.tables import decision_protocols, primary_low_quality_protocol

__all__ = [
    "CORRELATION_EFFECT",
    "SHARE_EFFECT",
    "VERDICTS",
    "claim_ablations",
    "claim_augmentation",
    "claim_baselines",
    "claim_margin_form",
    "claim_norm_quality",
    "combine",
    "interval_verdict",
]

VERDICTS = ("supported", "not supported", "inconclusive")
#: Smallest correlation worth calling one (Cohen's "small").
CORRELATION_EFFECT = 0.1
#: Smallest difference of augmented shares worth calling one (≈ Cohen's h = 0.2 around 50 %).
SHARE_EFFECT = 0.10
_AUG_PAPER = "the paper's augmentation analysis: share of augmented samples among low- vs high-norm features"


def _clean(value: Any) -> Any:
    """JSON-friendly numbers: NaN → None, numpy scalars → Python, rounded floats."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return None if not math.isfinite(v) else round(v, 6)
    return value


def combine(verdicts: Sequence[str]) -> str:
    """Not supported if any part is, supported if all parts are, inconclusive otherwise (or with no parts)."""
    if not verdicts:
        return "inconclusive"
    if "not supported" in verdicts:
        return "not supported"
    if all(v == "supported" for v in verdicts):
        return "supported"
    return "inconclusive"


def interval_verdict(los: Sequence[float], his: Sequence[float], effect: float) -> str:
    """Supported if every interval is above 0; not supported if every one is below ``effect``; else inconclusive."""
    los, his = np.asarray(los, dtype=np.float64), np.asarray(his, dtype=np.float64)
    if los.size == 0 or not (np.isfinite(los).all() and np.isfinite(his).all()):
        return "inconclusive"
    if (los > 0).all():
        return "supported"
    if (his < effect).all():
        return "not supported"
    return "inconclusive"


def _part(name: str, verdict: str, rule: str, numbers: Mapping[str, Any],
          decided: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """One part; ``decided``: its :func:`.decision.decision` (how far the verdict is from flipping), None for no data."""
    out = {"name": name, "verdict": verdict, "rule": rule, "numbers": _clean(dict(numbers))}
    out["decision"] = _clean(dict(decided)) if decided is not None else None
    return out


def _interval_decision(verdict: str, items: Sequence[Mapping[str, float]], can_refute: bool = True) -> dict[str, Any]:
    """Decision of an interval rule over runs (:func:`.decision.interval_item` each): every run must pass either side."""
    return decision(verdict, all_of([i["to_supported"] for i in items]),
                    all_of([i["to_not_supported"] for i in items]) if can_refute else None,
                    "the run whose interval is nearest to the boundary")


def _interval_items(estimates: Mapping[str, tuple[float, float, float]], effect: float) -> dict[str, dict[str, float]]:
    """:func:`.decision.interval_item` per run of ``{run: (estimate, lo, hi)}``, its distances in units of the
    interval's SE combined with the seed spread of the estimates over the runs (when there are ≥ 2)."""
    finite = [e for e, _, _ in estimates.values() if np.isfinite(e)]
    seed_std = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
    return {r: interval_item(e, lo, hi, effect, seed_std=seed_std) for r, (e, lo, hi) in estimates.items()}


def _interval_evidence(items: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Per-run interval noise and the seed spread of the estimates: what the interval rule could see."""
    ests = [i["estimate"] for i in items.values() if "estimate" in i and np.isfinite(i["estimate"])]
    return {"runs": {r: {"se": i["se"], "noise": i["noise"], "mde": i["mde"], "to_supported_se": i["to_supported"],
                         "to_not_supported_se": i["to_not_supported"]} for r, i in items.items()},
            "seed_std": float(np.std(ests, ddof=1)) if len(ests) > 1 else None, "n_runs": len(items),
            "noise": "sqrt(interval SE² + seed_std²): the distances count how far another seed or CPU would move a bound"}


def _claim(cid: int, title: str, statement: str, paper: str, parts: list[dict], rule: str,
           numbers: Mapping[str, Any] | None = None, note: str = "") -> dict[str, Any]:
    verdict = combine([p["verdict"] for p in parts])
    out = {"id": cid, "title": title, "statement": statement, "paper": paper, "verdict": verdict, "rule": rule,
           "numbers": _clean(dict(numbers or {})), "parts": parts,
           "decision": _clean(part_decision(parts, verdict))}
    if note:
        out["note"] = note
    return out


# --------------------------------------------------------------------------- claim 1
def _whole(value: Any) -> Any:
    """A count read from a float column (step, images seen: NaN where unknown) as an int."""
    return int(value) if isinstance(value, (float, np.floating)) and float(value).is_integer() else value


def _early_place(early: pd.DataFrame) -> tuple[dict[str, Any], str]:
    """Where part b was measured: schedule, progress, step, images seen and epoch (one value when every run
    shares it, else the distinct values), and the same in words."""
    place = {}
    for key in ("schedule", "progress", "step", "images_seen", "epoch"):
        distinct = [_whole(v) for v in pd.unique(early[key])]
        place[key] = distinct[0] if len(distinct) == 1 else sorted(distinct)
    if place["schedule"] == "progress" and not isinstance(place["step"], list):
        return place, f"step {int(place['step'])} = {float(place['progress']):.1%} of training"
    if place["schedule"] == "epoch" and not isinstance(place["epoch"], list):
        return place, f"epoch {int(place['epoch'])}"
    return place, "per run"


def claim_norm_quality(
    correlation: pd.DataFrame,
    reference_runs: Sequence[str],
    pyi_nonlinearity: Mapping[str, Mapping[str, float]] | None = None,
    progress_correlation: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Claim 1: feature norm ~ IQ (final epoch and early), and a non-linear P_yi ~ IQ relation.

    ``correlation``: rows of ``correlation.csv``; ``reference_runs``: the reference AdaFace runs;
    ``pyi_nonlinearity``: per run :func:`.correlation.nonlinearity_test` of final-epoch clean P_yi against the target;
    ``progress_correlation``: rows of ``correlation_progress.csv``, for part b at the paper's fraction of training
    (:func:`.progress.early_rows`: the progress probe nearest to 1/26, else epoch 1).
    """
    statement = ("The feature norm is a proxy for image quality: it correlates positively with the BRISQUE-based IQ "
                 "score, visibly early in training; P_yi relates to IQ non-linearly.")
    paper = f"Fig. 2; final-epoch correlation of norm and IQ about {FIG2_NORM_IQ_CORRELATION} (coefficient not stated)"
    rule = "all three parts supported → supported; part a or b not supported → not supported; otherwise inconclusive"
    rows = correlation[correlation["run"].isin(list(reference_runs)) & (correlation["pass"] == "clean")]
    target = "iq" if (rows["target"] == "iq").any() else ("gt_quality" if (rows["target"] == "gt_quality").any() else None)
    if target is None or not len(reference_runs):
        why = "no reference AdaFace run with probe tables" if not len(reference_runs) else "no quality target in the probe tables"
        parts = [_part(p, "inconclusive", f"no data: {why}", {}) for p in ("a: final epoch", "b: early", "c: P_yi non-linear")]
        return _claim(1, "Feature norm as a quality proxy", statement, paper, parts, rule)
    rows = rows[rows["target"] == target]
    norm_rows = rows[rows["quantity"] == "norm"]
    final = norm_rows.loc[norm_rows.groupby("run")["epoch"].idxmax()]
    early = early_rows(correlation, progress_correlation, reference_runs)
    early = early[(early["pass"] == "clean") & (early["target"] == target) & (early["quantity"] == "norm")]
    place, where = _early_place(early)
    target_name = "IQ = 1 - BRISQUE/100" if target == "iq" else "ground-truth quality (no IQ scores available)"

    def per_run(frame: pd.DataFrame, *at: str) -> dict[str, Any]:
        return {r.run: {**{k: _whole(getattr(r, k)) for k in ("epoch", *at)}, "spearman": r.spearman,
                        "spearman_ci": [r.spearman_lo, r.spearman_hi],
                        "pearson": r.pearson, "pearson_ci": [r.pearson_lo, r.pearson_hi], "n": r.n}
                for r in frame.itertuples(index=False)}

    a_rule = (f"supported if the final-epoch Spearman(norm, {target}) of every reference AdaFace run (clean probe) "
              f"has a 95% bootstrap CI above 0; not supported if every CI lies below {CORRELATION_EFFECT}")
    b_rule = a_rule.replace("final-epoch", "early") + (
        f"; early = the progress probe nearest to {PAPER_EARLY_PROGRESS:.2%} of the optimiser steps (the paper's epoch "
        "1 of 26; step 0 excluded), or epoch 1 for a run without progress probes")
    def interval_part(name: str, frame: pd.DataFrame, rule: str, numbers: dict[str, Any]) -> dict[str, Any]:
        verdict = interval_verdict(frame["spearman_lo"], frame["spearman_hi"], CORRELATION_EFFECT)
        items = _interval_items({r.run: (r.spearman, r.spearman_lo, r.spearman_hi) for r in frame.itertuples(index=False)},
                                CORRELATION_EFFECT)
        return _part(name, verdict, rule, {**numbers, "what_it_could_see": _interval_evidence(items)},
                     _interval_decision(verdict, list(items.values())))

    parts = [
        interval_part("a: final epoch", final, a_rule,
                      {"target": target, "runs": per_run(final), "paper_correlation": FIG2_NORM_IQ_CORRELATION}),
        interval_part(f"b: early ({where})", early, b_rule,
                      {"target": target, "target_progress": PAPER_EARLY_PROGRESS,
                       "runs": per_run(early, "schedule", "progress", "step", "images_seen")}),
    ]
    tests = {r: dict(g) for r, g in (pyi_nonlinearity or {}).items() if r in set(reference_runs)}
    c_rule = ("supported if, for every reference run at the final epoch, a monotone (isotonic) fit of P_yi on the target "
              "predicts held-out images better than a straight line: the bootstrap 95% CI of the 5-fold "
              "cross-validated gain 1 - MSE_monotone / MSE_linear lies above 0; otherwise inconclusive (a "
              "linear-looking relation at this sample size does not refute the figure)")
    if tests:
        los = [g["lo"] for g in tests.values()]
        c_verdict = "supported" if np.isfinite(los).all() and (np.asarray(los) > 0).all() else "inconclusive"
    else:
        c_verdict = "inconclusive"
        c_rule = "no data: no P_yi measurements for the reference runs; " + c_rule
    pyi_final = rows[rows["quantity"] == "p_yi"]
    pyi_final = pyi_final.loc[pyi_final.groupby("run")["epoch"].idxmax()] if len(pyi_final) else pyi_final
    c_items = list(_interval_items({r: (g["gain"], g["lo"], g["hi"]) for r, g in tests.items()}, np.nan).values())
    parts.append(_part("c: P_yi non-linear", c_verdict, c_rule, {"target": target, "nonlinearity": tests, "runs": per_run(pyi_final)},
                       _interval_decision(c_verdict, c_items, can_refute=False) if tests else None))
    numbers = {
        "target": target_name,
        "final_spearman_mean": float(final["spearman"].mean()),
        "final_pearson_mean": float(final["pearson"].mean()),
        **{f"early_{k}": v for k, v in place.items()},
        "early_target_progress": PAPER_EARLY_PROGRESS,
        "early_spearman_mean": float(early["spearman"].mean()),
        "paper_correlation": FIG2_NORM_IQ_CORRELATION,
    }
    return _claim(1, "Feature norm as a quality proxy", statement, paper, parts, rule, numbers)


# --------------------------------------------------------------------------- claim 2
def claim_margin_form(adaface_params: Mapping[str, float]) -> dict[str, Any]:
    """Claim 2 (analytic): AdaFace's |GST| favours hard samples at high norm and disfavours them at low norm.

    The emphasis ratio R = |g(hard △)| / |g(easy ○)| is :func:`marginlab.analysis.gst.emphasis` (the one
    definition, also tabulated beside Fig. 3; autograd through the head code), computed for AdaFace with
    ``adaface_params`` at ẑ = +1 (high norm) and ẑ = -1 (low norm); CosFace and ArcFace (paper defaults)
    are shown for contrast (no norm dependence).
    """
    from marginlab.analysis.gst import EASY_POINT, HARD_POINT, emphasis

    statement = ("The margin form decides which samples are emphasised: AdaFace emphasises hard samples when the "
                 "feature norm is high and de-emphasises them when it is low (Fig. 3, |GST|).")
    rule = (f"supported if R(ẑ=+1) > 1 and R(ẑ=-1) < 1, where R = |GST(hard △ {HARD_POINT})| / |GST(easy ○ "
            f"{EASY_POINT})| at (cos θ_y, cos θ_j); not supported if the order is reversed; inconclusive otherwise")
    params = {k: float(v) for k, v in adaface_params.items() if k in ("s", "m", "h", "t_alpha")}
    ratios = {f"adaface z_hat={z:+g}": emphasis("adaface", {"z_hat": z}, hyperparameters=params) for z in (1.0, -1.0)}
    ratios.update({head: emphasis(head) for head in ("cosface", "arcface")})
    hi, lo = ratios["adaface z_hat=+1"]["hard_over_easy"], ratios["adaface z_hat=-1"]["hard_over_easy"]
    if hi is None or lo is None:
        verdict = "inconclusive"
    elif hi > 1 and lo < 1:
        verdict = "supported"
    elif hi < 1 and lo > 1:
        verdict = "not supported"
    else:
        verdict = "inconclusive"
    numbers = {"adaface_params": params, "easy_point": list(EASY_POINT), "hard_point": list(HARD_POINT), "ratios": ratios}
    part = _part("a: emphasis ratios", verdict, rule, numbers, decision(verdict, None, None, "analytic: exact, no sampling noise"))
    return _claim(2, "Margin form controls sample emphasis", statement, "Fig. 3 and issue #24", [part],
                  "the single part's verdict", note="analytic: evaluates the margin function through the head code; "
                  "no training data involved")


# --------------------------------------------------------------------------- claim 3
def _entry(at: pd.DataFrame, label: str) -> dict[str, Any]:
    """``label, mean, n_seeds, se`` of one label from an aggregate frame indexed by label."""
    row = at.loc[label]
    return {"label": label, "mean": float(row["mean"]), "n_seeds": int(row["n_seeds"]), "se": float(row["se"])}


def _versus(agg: pd.DataFrame, protocol: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """mean_a - mean_b on ``protocol`` with its noise (pooled seed std of the protocol in ``agg``) and judgement."""
    on = agg[agg["protocol"] == protocol]
    s = pooled_std(on["std"], on["n_seeds"])
    se, source = difference_noise(int(a["n_seeds"]), int(b["n_seeds"]), s, float(a["se"]), float(b["se"]))
    d = float(a["mean"] - b["mean"])
    n_pairs = min(int(a["n_seeds"]), int(b["n_seeds"]))
    # What this comparison could see: the difference the |d| > 2·SE rule calls clear with 80 % power, the
    # one a paired t-test (α = 0.05, 80 % power) over these seeds would detect (independent seeds: the
    # per-seed differences spread by s·√2), and how far |d| lies from the rule's threshold in SEs.
    distance = max(comparison_sides(d, se, CLEAR_Z))  # the nearer of 'clearly better' / 'clearly worse': (|d| - z·SE) / SE
    return {"a": a["label"], "b": b["label"], "mean_a": a["mean"], "mean_b": b["mean"], "delta": d,
            "noise_se": se, "noise_source": source, "seed_std_pooled": s, "judgement": judge(d, se),
            "mde_clear_rule": clear_rule_mde(se, CLEAR_Z), "mde_paired_t": paired_t_mde(s * np.sqrt(2.0), n_pairs),
            "threshold_distance_se": distance, "borderline": is_borderline(distance)}


def _best_of(entries: list[dict[str, Any]]) -> str:
    """supported if all 'better', not supported if any 'worse', inconclusive otherwise (or when empty)."""
    as_verdict = {"better": "supported", "worse": "not supported"}
    return combine([as_verdict.get(e["judgement"], "inconclusive") for e in entries])


def _sides(entries: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    """(better sides, worse sides) in SEs of comparisons (:func:`.decision.comparison_sides`)."""
    pairs = [comparison_sides(e["delta"], e["noise_se"], CLEAR_Z) for e in entries]
    return [b for b, _ in pairs], [w for _, w in pairs]


def _best_of_part(name: str, entries: list[dict[str, Any]], rule: str, numbers: Mapping[str, Any]) -> dict[str, Any]:
    """A part decided by :func:`_best_of`: every comparison clearly better, or any clearly worse."""
    verdict = _best_of(entries)
    better, worse = _sides(entries)
    decided = decision(verdict, all_of(better), any_of(worse),
                       "supported: the least clear comparison; not supported: the clearest 'worse' one")
    return _part(name, verdict, rule, numbers, decided)


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
    """Claim 3 (Table 1): h = 0.33 best and every h beats CurricularFace; m = 0.4 best; the norm is the best proxy.

    ``ablation``: rows of ``ablation.csv``; ``agg``: :func:`.tables.aggregate` of all runs (for the
    pooled seed std and test-set errors). Decided on the primary low-quality protocol
    (:func:`.tables.primary_low_quality_protocol`).
    """
    statement = (f"Ablations (Table 1): h = {PAPER_BEST['h']:.2f} is best and every h beats CurricularFace; "
                 f"m = {PAPER_BEST['m']:g} (the paper's choice) is best; the feature {PAPER_BEST['proxy']} is the best "
                 "quality proxy.")
    paper = "Table 1 (numbers not available): " + "; ".join(f"{k}: {v}" for k, v in ABLATION_CONCLUSIONS.items())
    rule = "parts combined: any not supported → not supported; all supported → supported; otherwise inconclusive"
    if ablation.empty:
        parts = [_part(f"{f}", "inconclusive", "no data: no runs tagged ablation_" + f, {}) for f in ("h", "m", "proxy")]
        return _claim(3, "Ablations of h, m and the proxy", statement, paper, parts, rule)
    quality = dict(zip(agg["protocol"], agg["quality"]))
    protocol = primary_low_quality_protocol(ablation["set"], quality)
    if protocol is None:
        parts = [_part("all", "inconclusive", "no data: no low-quality protocol among the ablation results", {})]
        return _claim(3, "Ablations of h, m and the proxy", statement, paper, parts, rule)
    at = agg[agg["protocol"] == protocol].set_index("label")
    rows = ablation[ablation["set"] == protocol]
    base_labels = [lab for lab in dict.fromkeys(rows[rows["factor"] == "baseline"]["label"]) if lab in at.index]
    parts = []
    for factor in ("h", "m", "proxy"):
        f_rows = rows[rows["factor"] == factor].drop_duplicates("label")
        best_rule = (f"supported if the paper's best setting ({factor}={PAPER_BEST[factor]}) beats every other {factor} "
                     f"setting on {protocol} by more than 2 standard errors of the difference; not supported if any "
                     "other setting beats it by that much; otherwise inconclusive")
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
        parts.append(_best_of_part(f"{factor}: paper's best", comps, best_rule,
                                   {"protocol": protocol, "best_setting": best[0].setting, "comparisons": comps}))
        if factor == "h":
            cf_rule = (f"supported if every h setting beats every CurricularFace label on {protocol} by more than 2 standard "
                       "errors; not supported if CurricularFace beats any h setting by that much; otherwise inconclusive")
            if not base_labels:
                parts.append(_part("h: all beat CurricularFace", "inconclusive", "no data: no CurricularFace run; " + cf_rule, {}))
            else:
                comps = []
                for r in f_rows.itertuples(index=False):
                    if r.label not in at.index:
                        continue
                    for cf in base_labels:
                        comps.append(dict(_versus(agg, protocol, _entry(at, r.label), _entry(at, cf)), setting=r.setting))
                parts.append(_best_of_part("h: all beat CurricularFace", comps, cf_rule, {"protocol": protocol, "comparisons": comps}))
    return _claim(3, "Ablations of h, m and the proxy", statement, paper, parts, rule, {"protocol": protocol})


# --------------------------------------------------------------------------- claim 4
def claim_augmentation(gaps: Mapping[str, Mapping[str, float]], norm_changes: Mapping[str, pd.DataFrame] | None = None,
                       bins: int = 5) -> dict[str, Any]:
    """Claim 4: low-norm features are more often augmented.

    ``gaps``: per reference run :func:`.augmentation.low_high_gap` (last epoch); ``norm_changes``: per
    run :func:`.augmentation.norm_change` (reported, not decisive).
    """
    statement = ("Augmented samples (crop, low resolution, photometric) are over-represented among low-norm features "
                 "and under-represented among high-norm ones.")
    rule = (f"supported if, for every reference AdaFace run, the bootstrap 95% CI of share_any(lowest of {bins} norm bins) - "
            f"share_any(highest bin) on the augmented probe pass at the last epoch lies above 0; not supported if every "
            f"CI lies below {SHARE_EFFECT}; otherwise inconclusive")
    if not gaps:
        return _claim(4, "Augmentation and the norm", statement, _AUG_PAPER,
                      [_part("a: low vs high norm", "inconclusive", "no data: no augmented probe rows for the reference runs; " + rule, {})],
                      "the single part's verdict")
    verdict = interval_verdict([g["lo"] for g in gaps.values()], [g["hi"] for g in gaps.values()], SHARE_EFFECT)
    items = _interval_items({r: (g["gap"], g["lo"], g["hi"]) for r, g in gaps.items()}, SHARE_EFFECT)
    numbers: dict[str, Any] = {"runs": {r: dict(g) for r, g in gaps.items()}, "what_it_could_see": _interval_evidence(items)}
    if norm_changes:
        numbers["norm_change"] = {r: {row.augmentation: {"n": row.n, "mean_log_ratio": row.mean_log_ratio,
                                                          "median_ratio": row.median_ratio}
                                      for row in f.itertuples(index=False)} for r, f in norm_changes.items()}
    return _claim(4, "Augmentation and the norm", statement, _AUG_PAPER,
                  [_part("a: low vs high norm", verdict, rule, numbers, _interval_decision(verdict, list(items.values())))],
                  "the single part's verdict")


# --------------------------------------------------------------------------- claim 5
def claim_baselines(agg: pd.DataFrame, reference: str | None, baselines: Sequence[str]) -> dict[str, Any]:
    """Claim 5: AdaFace gains most on low/mixed-quality protocols while matching the baselines on high-quality ones.

    ``agg``: :func:`.tables.aggregate` over the compared labels; ``baselines``: the other main labels.
    """
    statement = ("AdaFace beats the baselines most on low/mixed-quality benchmarks while matching them on high-quality ones.")
    paper = (f"Tables 3-5: e.g. IJB-C TAR@1e-4 {IJB_TAR_1E4['adaface']['ijbc']:.2f} vs "
             f"{IJB_TAR_1E4['curricularface']['ijbc']:.2f} (CurricularFace); LFW {VERIFICATION['adaface']['lfw']:.2f} "
             "(all methods within ~0.1)")
    method = ("Per benchmark (each verification set; IJB TAR@FAR=1e-4 or the lowest supported FAR; identification "
              "rank-1) AdaFace is compared with the best baseline on that benchmark; a difference is clear beyond 2 "
              "standard errors. ")
    a_rule = method + ("supported if AdaFace is clearly better on at least one low-quality benchmark, clearly worse on "
                       "none, and its mean gain on low-quality benchmarks exceeds that on high-quality ones (when both "
                       "exist); not supported if it is clearly worse on a low-quality benchmark, or clearly better on a "
                       "high-quality one but on no low-quality one; otherwise inconclusive")
    b_rule = method + ("supported if AdaFace is not clearly worse than the best baseline on any high-quality benchmark; "
                       "not supported if it is clearly worse on one; inconclusive without high-quality benchmarks or "
                       "a noise estimate")
    rule = "parts combined: any not supported → not supported; both supported → supported; otherwise inconclusive"
    title = "Gains on low-quality benchmarks"
    baselines = [b for b in baselines if b != reference]
    if reference is None or not baselines or agg[agg["label"] == reference].empty:
        why = "no reference AdaFace results" if reference is None or agg[agg["label"] == reference].empty else "no baseline results"
        return _claim(5, title, statement, paper,
                      [_part("a: largest gains on low quality", "inconclusive", f"no data: {why}; " + a_rule, {}),
                       _part("b: matches on high quality", "inconclusive", f"no data: {why}; " + b_rule, {})], rule)
    ref = agg[agg["label"] == reference].set_index("protocol")
    comps = []
    for protocol in decision_protocols(list(ref.index)):
        others = agg[(agg["protocol"] == protocol) & agg["label"].isin(baselines)]
        others = others[np.isfinite(others["mean"])]
        if others.empty:
            continue
        at = agg[agg["protocol"] == protocol].set_index("label")
        best = str(others.loc[others["mean"].idxmax(), "label"])
        entry = _versus(agg[agg["label"].isin([reference, *baselines])], protocol, _entry(at, reference), _entry(at, best))
        entry.update(protocol=protocol, quality=ref.loc[protocol, "quality"], best_baseline=best)
        comps.append(entry)
    low = [c for c in comps if c["quality"] == "low"]
    high = [c for c in comps if c["quality"] == "high"]
    gain_low = float(np.mean([c["delta"] for c in low])) if low else np.nan
    gain_high = float(np.mean([c["delta"] for c in high])) if high else np.nan
    jl, jh = [c["judgement"] for c in low], [c["judgement"] for c in high]
    if not low:
        a_verdict = "inconclusive"
    elif "worse" in jl or ("better" in jh and "better" not in jl):
        a_verdict = "not supported"
    elif "better" in jl and (not high or gain_low > gain_high):
        a_verdict = "supported"
    else:
        a_verdict = "inconclusive"
    if not high or "unknown" in jh:
        b_verdict = "inconclusive"
    else:
        b_verdict = "not supported" if "worse" in jh else "supported"
    (better_low, worse_low), (better_high, worse_high) = _sides(low), _sides(high)
    not_worse_low = [-w for w in worse_low]  # past 0: clearly-worse is out of reach by that many SEs
    a_decided = decision(
        a_verdict,
        all_of([any_of(better_low), all_of(not_worse_low)]) if low else None,
        any_of([any_of(worse_low), all_of([any_of(better_high), -any_of(better_low)])]) if low else None,
        "supported: the clearest low-quality gain and the nearest low-quality loss (the gain-size order is "
        "not a noise boundary); not supported: a clear low-quality loss, or a clear high-quality gain with none on low")
    b_decided = decision(b_verdict, all_of([-w for w in worse_high]) if high else None,
                         any_of(worse_high) if high else None, "the high-quality comparison nearest to 'clearly worse'")
    numbers = {"reference": reference, "baselines": list(baselines), "mean_gain_low_quality": gain_low,
               "mean_gain_high_quality": gain_high}
    parts = [
        _part("a: largest gains on low quality", a_verdict, a_rule, {"mean_gain_low_quality": gain_low,
                                                                     "mean_gain_high_quality": gain_high, "comparisons": low},
              a_decided),
        _part("b: matches on high quality", b_verdict, b_rule, {"comparisons": high}, b_decided),
    ]
    return _claim(5, title, statement, paper, parts, rule, numbers)
