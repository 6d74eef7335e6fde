"""The training-length contrast of the scale study (:mod:`.scale`) without the WLS line's confounding of
training length with data size: runs of one head, seed and data size that differ only in epochs share
their probe images (checked: only runs whose last-epoch clean probes hold identical ``index`` sets are
paired). Per pair: Spearman(norm, target) of the longer run minus the shorter (last probe epoch, clean
pass) on the common images, with a paired identity-cluster bootstrap interval (one resample of the
identities applied to both runs, so the probe-sampling noise common to both cancels); over the pairs of a
(head, target): the mean difference with a Student t interval and p value. ``scale_fit.json`` carries it
as ``training_length_pairs``; the headline adds its sentence.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from marginlab.analysis.cluster_bootstrap import (
    bootstrap_correlations,
    cluster_codes,
    group_rng,
    percentile_interval,
)
from marginlab.analysis.correlation import IDENTITY_COLUMN, MIN_N
from marginlab.analysis.scale import TARGETS

__all__ = ["PAIR_METHOD", "pairs_sentence", "training_length_pairs", "training_length_statement"]

PAIR_METHOD = ("runs of one head, seed and data size (identities, training images, batch size) that differ only in "
               "epochs, paired when their last-epoch clean probes hold the same images; per pair, Spearman(norm, target) "
               "of the longer minus the shorter run on those images, with a percentile bootstrap interval in which both "
               "runs get the same resample of identities (of images when the probe has no identities); over the pairs of "
               "a head and target, the mean difference with a Student t interval and two-sided p on k − 1 degrees of "
               "freedom")


def _pair_key(row: Mapping[str, Any], info: Mapping[str, Any]) -> tuple | None:
    """What must match for two runs to differ only in epochs, or None when the seed is unknown."""
    seed = info.get("seed")
    if seed is None or (isinstance(seed, float) and not np.isfinite(seed)):
        return None
    params = info.get("head_params")
    params = tuple(sorted((str(k), repr(v)) for k, v in params.items())) if isinstance(params, Mapping) else None
    return (row["head"], int(seed), info.get("proxy"), params, int(row["identities"]), int(row["train_images"]),
            int(row["batch_size"]))


def _final_clean_probe(probe: pd.DataFrame, run: str, epoch: int) -> pd.DataFrame:
    return probe[(probe["run"] == run) & (probe["pass"].astype(str) == "clean") & (probe["epoch"] == epoch)]


def _pair_difference(short: Mapping[str, Any], long: Mapping[str, Any], merged: pd.DataFrame, target: str, *,
                     n_resamples: int, confidence: float, seed: int) -> dict[str, Any] | str | None:
    """One pair's Spearman difference (longer − shorter) for ``target`` with its paired bootstrap interval, or why
    none; None when the target is absent from both probes (no ground truth on real data)."""
    xs, xl = merged["norm_s"].to_numpy(np.float64), merged["norm_l"].to_numpy(np.float64)
    ts, tl = merged[f"{target}_s"].to_numpy(np.float64), merged[f"{target}_l"].to_numpy(np.float64)
    if not (np.isfinite(ts).any() or np.isfinite(tl).any()):
        return None
    if not np.allclose(ts, tl, equal_nan=True, rtol=0, atol=1e-6):
        return f"the two probes' {target} values differ"
    ok = np.isfinite(xs) & np.isfinite(xl) & np.isfinite(ts)
    if ok.sum() < MIN_N or np.ptp(ts[ok]) == 0 or np.ptp(xs[ok]) == 0 or np.ptp(xl[ok]) == 0:
        return f"fewer than {MIN_N} finite, non-constant {target} pairs"
    ids = None
    if f"{IDENTITY_COLUMN}_s" in merged.columns:
        ls, ll = merged[f"{IDENTITY_COLUMN}_s"].to_numpy(), merged[f"{IDENTITY_COLUMN}_l"].to_numpy()
        if not np.array_equal(ls, ll):
            return "the two probes give the same images different identities"
        ids = cluster_codes(ls[ok])
    rng = group_rng(seed, "training_length", short["run"], long["run"], target)
    boot = bootstrap_correlations({"short": xs[ok], "long": xl[ok]}, ts[ok], n_resamples=n_resamples, rng=rng,
                                  clusters=ids)
    lo, hi = percentile_interval(boot["long"]["spearman"] - boot["short"]["spearman"], confidence)
    rho_s = float(stats.spearmanr(xs[ok], ts[ok]).statistic)
    rho_l = float(stats.spearmanr(xl[ok], ts[ok]).statistic)
    return {"head": short["head"], "target": target, "identities": int(short["identities"]),
            "train_images": int(short["train_images"]), "short_run": short["run"], "long_run": long["run"],
            "short_epochs": int(short["epochs"]), "long_epochs": int(long["epochs"]),
            "short_images_seen": int(short["images_seen"]), "long_images_seen": int(long["images_seen"]),
            "n_images": int(ok.sum()), "n_identities": 0 if ids is None else int(ids.max()) + 1,
            "bootstrap": "image" if ids is None else "identity",
            "spearman_short": rho_s, "spearman_long": rho_l, "difference": rho_l - rho_s,
            "difference_lo": lo, "difference_hi": hi, "established": bool(lo > 0 or hi < 0)}


def _pairs_summary(pairs: list[dict[str, Any]], confidence: float) -> list[dict[str, Any]]:
    """Per (head, target): mean difference over its pairs with a t interval and two-sided p (k − 1 dof)."""
    out = []
    for head, target in dict.fromkeys((p["head"], p["target"]) for p in pairs):
        mine = [p for p in pairs if p["head"] == head and p["target"] == target]
        d = np.array([p["difference"] for p in mine], dtype=np.float64)
        k = len(d)
        row: dict[str, Any] = {"head": head, "target": target, "n_pairs": k, "mean": float(d.mean()), "sd": None,
                               "dof": None, "t": None, "t_lo": None, "t_hi": None, "p": None,
                               "n_positive": int((d > 0).sum())}
        if k >= 2:
            sd = float(d.std(ddof=1))
            row.update(sd=sd, dof=k - 1)
            if sd > 0:
                se = sd / np.sqrt(k)
                q = float(stats.t.ppf(0.5 + confidence / 2.0, k - 1))
                t = row["mean"] / se
                row.update(t=t, t_lo=row["mean"] - q * se, t_hi=row["mean"] + q * se,
                           p=float(2.0 * stats.t.sf(abs(t), k - 1)))
        row["statement"] = training_length_statement(row, mine, confidence)
        out.append(row)
    return out


def training_length_statement(summary: Mapping[str, Any], pairs: list[Mapping[str, Any]], confidence: float = 0.95) -> str:
    """One sentence on a (head, target)'s training-length pairs: the mean difference over pairs (t interval, p)
    and each pair's difference with its paired bootstrap interval."""
    kinds = {p["bootstrap"] for p in pairs}
    over = "identities" if kinds == {"identity"} else "images" if kinds == {"image"} else "identities or images"
    each = "; ".join(f"{p['identities']} identities, {p['short_epochs']}→{p['long_epochs']} epochs {p['difference']:+.3f} "
                     f"[{p['difference_lo']:+.3f}, {p['difference_hi']:+.3f}]" for p in pairs)
    k = summary["n_pairs"]
    what = (f"{summary['head']}: at a fixed data size and seed, training longer changes the final "
            f"{TARGETS[summary['target']]} by {summary['mean']:+.3f}")
    if summary.get("t_lo") is not None:
        what += (f" on average over {k} pairs ({confidence:.0%} t-CI {summary['t_lo']:+.3f} to {summary['t_hi']:+.3f}, "
                 f"p = {summary['p']:.2g}; {summary['n_positive']}/{k} positive)")
    elif k >= 2:
        what += f" in each of {k} pairs"
    else:
        what += " in the one pair"
    return (f"{what}; per pair (longer − shorter run on the same probe images, {confidence:.0%} paired bootstrap CI "
            f"over {over}): {each}.")


def training_length_pairs(probe: pd.DataFrame, table: pd.DataFrame, runs: pd.DataFrame, *, n_resamples: int = 2000,
                          confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Paired training-length differences (module docstring): ``{method, pairs, summary, not_paired}``.

    ``probe``: the collected probe rows (``run, pass, epoch, index, norm``, targets and the identity column);
    ``table``: :func:`scale_table` rows (sizes and the last probe epoch); ``runs``: the run table (``seed``, and
    ``proxy`` / ``head_params`` when present, must match too). Candidate pairs are consecutive training lengths
    within one key; a candidate whose probes do not hold the same images is listed in ``not_paired`` with why.
    Bootstraps are seeded per pair and target (:func:`.cluster_bootstrap.group_rng`).
    """
    out: dict[str, Any] = {"method": PAIR_METHOD, "pairs": [], "summary": [], "not_paired": {}}
    if table.empty or probe.empty:
        return out
    info = {r["run"]: r for r in runs.to_dict("records")}
    groups: dict[tuple, list[dict]] = {}
    for row in table.to_dict("records"):
        key = _pair_key(row, info.get(row["run"], {}))
        if key is not None:
            groups.setdefault(key, []).append(row)
    pairs = []
    for members in groups.values():
        members = sorted(members, key=lambda r: (int(r["epochs"]), r["run"]))
        for short, long in itertools.pairwise(members):
            if int(long["epochs"]) <= int(short["epochs"]):
                continue
            name = f"{short['run']} / {long['run']}"
            ps = _final_clean_probe(probe, short["run"], int(short["probe_epoch"]))
            pl = _final_clean_probe(probe, long["run"], int(long["probe_epoch"]))
            s_idx, l_idx = ps["index"].to_numpy(), pl["index"].to_numpy()
            if len(np.unique(s_idx)) != len(s_idx) or len(np.unique(l_idx)) != len(l_idx):
                out["not_paired"][name] = "a probe lists an image twice"
                continue
            common = np.intersect1d(s_idx, l_idx)
            if len(common) != len(s_idx) or len(common) != len(l_idx):
                out["not_paired"][name] = (f"probe images differ ({len(common)} shared of {len(s_idx)} and "
                                           f"{len(l_idx)})")
                continue
            cols = ["index", "norm", *[t for t in TARGETS if t in probe.columns]]
            cols += [IDENTITY_COLUMN] if IDENTITY_COLUMN in probe.columns else []
            merged = ps[cols].merge(pl[cols], on="index", suffixes=("_s", "_l"))
            why = []
            for target in TARGETS:
                if target not in probe.columns:
                    continue
                res = _pair_difference(short, long, merged, target, n_resamples=n_resamples, confidence=confidence,
                                       seed=seed)
                if isinstance(res, str):
                    why.append(f"{target}: {res}")
                elif res is not None:
                    pairs.append(res)
            if why:
                out["not_paired"][name] = "; ".join(why)
    pairs.sort(key=lambda p: (p["head"], list(TARGETS).index(p["target"]), p["identities"], p["short_epochs"]))
    out["pairs"] = pairs
    out["summary"] = _pairs_summary(pairs, confidence)
    return out


def pairs_sentence(pairs: Mapping[str, Any] | None) -> str:
    """The training-length sentence the headline adds: AdaFace's norm–IQ pairs (else the first), or why none."""
    if not pairs:
        return ""
    summary = pairs.get("summary") or []
    for pick in ([s for s in summary if s["head"] == "adaface" and s["target"] == "iq"],
                 [s for s in summary if s["target"] == "iq"], summary):
        if pick:
            return pick[0]["statement"]
    if pairs.get("not_paired"):
        n = len(pairs["not_paired"])
        return (f"No training-length difference is stated: {n} pair{'s' if n != 1 else ''} of runs that differ only in "
                f"epochs could not be paired ({next(iter(pairs['not_paired'].values()))}).")
    return ""
