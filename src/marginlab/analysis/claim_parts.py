"""How a claim of ``claims.json`` is assembled: its parts (verdict, rule, numbers, decision) and the
claim combining them (:func:`.verdict_rules.combine`); :func:`seed_part` decides a part by the
seed-level interval rule, the rule of claims 1 and 4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
from scipy import stats

from marginlab.analysis.decision import claim_decision, interval_item, p_decision
from marginlab.analysis.power import ci_se, t_test_mde
from marginlab.analysis.significance import (
    directional_p,
)
from marginlab.analysis.verdict_rules import (
    ALPHA,
    combine,
    interval_verdict,
    seed_interval_rule,
)


def clean_numbers(value: Any) -> Any:
    """JSON-friendly numbers: NaN → None, numpy scalars → Python, rounded floats."""
    if isinstance(value, Mapping):
        return {str(k): clean_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [clean_numbers(v) for v in value]
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


def make_part(name: str, verdict: str, rule: str, numbers: Mapping[str, Any],
          decided: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """One part; ``decided``: its decision block (:func:`.decision.p_decision`), None for no data."""
    out = {"name": name, "verdict": verdict, "rule": rule, "numbers": clean_numbers(dict(numbers))}
    out["decision"] = clean_numbers(dict(decided)) if decided is not None else None
    return out


def make_claim(cid: int, title: str, statement: str, paper: str, parts: list[dict], rule: str,
           numbers: Mapping[str, Any] | None = None, note: str = "") -> dict[str, Any]:
    p_refute = [(p.get("decision") or {}).get("p_refute") for p in parts]
    verdict = combine([p["verdict"] for p in parts], p_refute)
    out = {"id": cid, "title": title, "statement": statement, "paper": paper, "verdict": verdict, "rule": rule,
           "numbers": clean_numbers(dict(numbers or {})), "parts": parts,
           "decision": clean_numbers(claim_decision(parts, verdict))}
    if note:
        out["note"] = note
    return out


COMBINE_RULE = ("parts shown separately; combined: supported if every part is supported (intersection-union, no "
                 "adjustment); not supported if a part is refuted after Holm's adjustment over the refutable parts; "
                 "otherwise inconclusive")


def seed_part(name: str, estimates: Mapping[str, tuple[float, float, float]], effect: float, what: str,
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
        return make_part(name, "inconclusive", "no data: no finite estimate for the reference runs; " + rule, numbers)
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
        return make_part(name, verdict, rule, numbers, decided)
    (run, (est, lo, hi)), = rows.items()
    rule = ("one seed: the interval covers probe sampling only, not seed-to-seed variation; the run's own bootstrap 95% "
            "CI replaces the seed-level t interval; " + rule)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return make_part(name, "inconclusive", "no data: one seed and no interval for it; " + rule, numbers)
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
    return make_part(name, verdict, rule, numbers,
                 p_decision(verdict, p_sup, p_ref, "one run's bootstrap interval (normal approximation of its p-values)"))


def _inverse_variance(rows: Mapping[str, tuple[float, float, float]]) -> Optional[dict[str, float]]:
    est = np.array([e for e, _, _ in rows.values()])
    se = np.array([float(ci_se(lo, hi)) for _, lo, hi in rows.values()])
    if not (np.isfinite(se).all() and (se > 0).all()):
        return None
    w = 1.0 / se**2
    return {"estimate": float((w * est).sum() / w.sum()), "se": float(1.0 / np.sqrt(w.sum()))}
