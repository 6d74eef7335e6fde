"""Claims 3 (Table 1's ablations) and 5 (gains on low-quality benchmarks): decided on the benchmark
accuracies by the difference rule (:mod:`..verdict_rules`).

**Claim 3** holds Table 1's h, m and proxy ablations only: "every h beats CurricularFace" moved to claim 5
(AdaFace vs CurricularFace is counted in one claim only). **Claim 5** compares AdaFace with a comparator
fixed in ``analysis.comparator`` before looking (default CurricularFace, the paper's Tables 4-5
comparator), or with every baseline under a Dunnett adjustment; high-quality parity is a non-inferiority
test with the margin ``analysis.noninferiority_margin``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from marginlab.analysis.decision import p_decision
from marginlab.analysis.paper_numbers import (
    ABLATION_CONCLUSIONS,
    IJB_TAR_1E4,
    PAPER_BEST,
    VERIFICATION,
)
from marginlab.analysis.power import t_test_mde
from marginlab.analysis.significance import (
    difference_noise,
    difference_test,
    dunnett_pvalues,
    pooled_df,
    pooled_std,
)
from marginlab.analysis.tables import decision_protocols, primary_low_quality_protocol
from marginlab.analysis.verdict_rules import (
    best_setting_rule,
    benchmark_pvalues,
    low_quality_rule,
    noninferiority_rule,
)
from marginlab.analysis.claims.claim_registry import ClaimEvidence, register_claim
from marginlab.analysis.claim_parts import COMBINE_RULE, make_claim, make_part

#: ``analysis.comparator`` values: a baseline head (claim 5 compares AdaFace with it alone) or ``dunnett``.
COMPARATORS = ("curricularface", "cosface", "arcface", "magface", "normface", "dunnett")


def label_entry(at: pd.DataFrame, label: str) -> dict[str, Any]:
    """``label, mean, n_seeds, se`` of one label from an aggregate frame indexed by label."""
    row = at.loc[label]
    return {"label": label, "mean": float(row["mean"]), "n_seeds": int(row["n_seeds"]), "se": float(row["se"])}


def versus(agg: pd.DataFrame, protocol: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
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

    ``ablation``: rows of ``ablation.csv``; ``agg``: :func:`..tables.aggregate` of all runs (for the pooled
    seed std and test-set errors). Decided on the primary low-quality protocol
    (:func:`..tables.primary_low_quality_protocol`), one part per factor, :func:`best_setting_rule` on the
    difference rule's t statistics. The paper's "every h beats CurricularFace" is not tested here: AdaFace vs
    CurricularFace belongs to claim 5, so no comparison is counted in two claims.
    """
    statement = (f"Ablations (Table 1): h = {PAPER_BEST['h']:.2f} is the best h; m = {PAPER_BEST['m']:g} (the paper's "
                 f"choice) is the best m; the feature {PAPER_BEST['proxy']} is the best quality proxy. (Table 1's 'every "
                 "h beats CurricularFace' is tested in claim 5, AdaFace vs CurricularFace, not counted twice.)")
    paper = "Table 1 (numbers not available): " + "; ".join(f"{k}: {v}" for k, v in ABLATION_CONCLUSIONS.items())
    if ablation.empty:
        parts = [make_part(f"{f}: paper's best", "inconclusive", "no data: no runs tagged ablation_" + f, {}) for f in ("h", "m", "proxy")]
        return make_claim(3, "Ablations of h, m and the proxy", statement, paper, parts, COMBINE_RULE)
    quality = dict(zip(agg["protocol"], agg["quality"]))
    protocol = primary_low_quality_protocol(ablation["set"], quality)
    if protocol is None:
        parts = [make_part("all", "inconclusive", "no data: no low-quality protocol among the ablation results", {})]
        return make_claim(3, "Ablations of h, m and the proxy", statement, paper, parts, COMBINE_RULE)
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
            parts.append(make_part(f"{factor}: paper's best", "inconclusive", f"no data: no runs tagged ablation_{factor}", {}))
            continue
        if not best or not others:
            why = "the paper's best setting was not run" if not best else "no other setting was run"
            parts.append(make_part(f"{factor}: paper's best", "inconclusive", f"no data: {why}; " + best_rule,
                               {"protocol": protocol, "settings": {r.setting: r.mean for r in f_rows.itertuples(index=False)}}))
            continue
        comps = [dict(versus(agg, protocol, label_entry(at, best[0].label), label_entry(at, o.label)), setting=o.setting)
                 for o in others]
        t = np.array([c["t"] for c in comps])
        df = comps[0]["df"] if comps[0]["df"] is not None else math.inf
        res = best_setting_rule(t, df)
        for c, adj in zip(comps, res["p_holm"]):
            c["p_holm"] = float(adj)
        verdict = str(res["verdict"])
        parts.append(make_part(f"{factor}: paper's best", verdict, best_rule,
                           {"protocol": protocol, "best_setting": best[0].setting, "comparisons": comps},
                           p_decision(verdict, float(res["p_support"]), float(res["p_refute"]),
                                      "supported: the least clear comparison; not supported: the clearest Holm-adjusted "
                                      "comparison against")))
    return make_claim(3, "Ablations of h, m and the proxy", statement, paper, parts, COMBINE_RULE, {"protocol": protocol})


def claim_baselines(agg: pd.DataFrame, reference: str | None, baselines: Sequence[str],
                    comparator: str = "curricularface", margin: float = 1.0) -> dict[str, Any]:
    """Claim 5: AdaFace gains on low/mixed-quality benchmarks while matching the baselines on high-quality ones.

    ``agg``: :func:`..tables.aggregate` over the compared labels; ``baselines``: the other main labels;
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
        return make_claim(5, title, statement, paper, [make_part(names[0], "inconclusive", f"no data: {why}; " + a_rule, {}),
                                                   make_part(names[1], "inconclusive", f"no data: {why}; " + b_rule, {})],
                      COMBINE_RULE, {"reference": reference, "comparator": comparator})
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
            e = versus(pooled_on, protocol, label_entry(at, reference), label_entry(at, b))
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
        a = make_part(names[0], "inconclusive", "no data: no low-quality benchmark; " + a_rule, {})
    elif any(not np.isfinite(e["t"]) for es in low for e in es):
        a = make_part(names[0], "inconclusive", "no data: no noise estimate; " + a_rule, {"comparisons": [e for es in low for e in es]})
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
        a = make_part(names[0], verdict, a_rule, {"benchmarks": benchmarks, "comparisons": [e for es in low for e in es]},
                  p_decision(verdict, float(res["p_support"]), float(res["p_refute"]),
                             "Holm-adjusted p of the clearest low-quality gain / loss"))
    # 5b
    flat = [e for es in high for e in es]
    if not flat:
        b = make_part(names[1], "inconclusive", "no data: no high-quality benchmark; " + b_rule, {})
    elif any(not np.isfinite(e["noise_se"]) for e in flat):
        b = make_part(names[1], "inconclusive", "no data: no noise estimate; " + b_rule, {"comparisons": flat})
    else:
        dfs = np.array([e["df"] if e["df"] is not None else math.inf for e in flat])
        res = noninferiority_rule([e["delta"] for e in flat], [e["noise_se"] for e in flat], dfs, margin)
        for j, e in enumerate(flat):
            e.update(ni_ci=[float(res["lo"][j]), float(res["hi"][j])], p_noninferior=float(res["p_noninferior"][j]),
                     p_inferior_holm=float(res["p_inferior_holm"][j]), ni_mde_margin=t_test_mde(e["noise_se"], dfs[j], sides=1))
        verdict = str(res["verdict"])
        b = make_part(names[1], verdict, b_rule, {"margin": margin, "comparisons": flat,
                                              "ni_mde_note": "ni_mde_margin: the smallest margin this test would establish "
                                                             "with 80% power if the heads were truly equal"},
                  p_decision(verdict, float(res["p_support"]), float(res["p_refute"]),
                             "supported: the least clear non-inferiority; not supported: the clearest Holm-adjusted "
                             "inferiority"))
    return make_claim(5, title, statement, paper, [a, b], COMBINE_RULE, numbers)


@register_claim("3", order=30)
def claim_3(ev: ClaimEvidence) -> dict[str, Any]:
    """Claim 3 from Table 1 and every run's aggregated metrics."""
    return claim_ablations(ev.ablation, ev.aggregate)


@register_claim("5", order=50)
def claim_5(ev: ClaimEvidence) -> dict[str, Any]:
    """Claim 5: the reference against the compared main labels, with the configured comparator and margin."""
    return claim_baselines(ev.compared_aggregate, ev.reference, list(ev.compared), comparator=ev.params.analysis.comparator,
                           margin=ev.params.analysis.noninferiority_margin)
