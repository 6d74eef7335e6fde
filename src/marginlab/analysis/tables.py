"""Seed aggregation, the main comparison table and Table 1 (ablations).

Runs sharing a ``label`` are seeds of one configuration. Per label and protocol (values in percent,
see :mod:`.collect`): ``mean``, ``std`` (sample, ddof = 1; NaN with one seed), ``n_seeds`` and ``se``
(test-set sampling error of the mean: sqrt(Σ se_i²) / n).

**Reference AdaFace**: the label of the AdaFace runs with the paper's default head parameters and the
feature-norm proxy (preferring one tagged ``main``) — :func:`reference_label`.

**Comparison** (``comparison.csv``): every label with a run tagged ``main`` (all labels when no run
is), one row per protocol: ``label, head, protocol, quality, mean, std, n_seeds, delta_vs_adaface,
ci_lo, ci_hi, p_value, test, n_pairs, paper_value, paper_setting``. ``delta_vs_adaface`` = mean(label)
- mean(reference) (0 on the reference's own rows). ``ci_lo``/``ci_hi``/``p_value`` belong to the mean
paired difference (label - reference) over the ``n_pairs`` seeds both ran (Student-t interval and
``scipy.stats.ttest_rel``, :func:`.significance.paired_difference`), ``test`` = ``"paired t-test"``
with ≥ 2 paired seeds, ``"n/a"`` otherwise, ``"reference"`` on the reference rows. ``paper_value`` /
``paper_setting``: the paper's number for that head and protocol (:mod:`.paper_numbers`), only on
labels with the head's default configuration.

**Ablation** (``ablation.csv``, Table 1): ``factor, setting, label, is_reference, set, mean, std,
n_seeds``. Factors ``h``, ``m``, ``proxy`` hold the AdaFace labels tagged ``ablation_h`` /
``ablation_m`` / ``ablation_proxy`` (``setting`` ``h=0.22``, ``m=0.5``, ``proxy=brisque``); the
reference AdaFace appears in every factor (``is_reference``). Factor ``baseline`` holds the
CurricularFace labels (setting ``CurricularFace``): those tagged with an ablation tag, else those
with CurricularFace's default parameters. ``set`` is the protocol string of the comparison table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marginlab.analysis.paper_numbers import paper_value
from marginlab.analysis.significance import describe, paired_difference
from marginlab.evalsets import eval_sets
from marginlab.heads import HEAD_NAMES

__all__ = [
    "ABLATION_COLUMNS", "ABLATION_FACTORS", "AGGREGATE_COLUMNS", "COMPARISON_COLUMNS", "ablation_table",
    "aggregate", "comparison_table", "decision_protocols", "main_labels", "primary_low_quality_protocol",
    "reference_label", "seed_values",
]

AGGREGATE_COLUMNS = ["label", "head", "protocol", "family", "set", "metric", "quality", "mean", "std", "n_seeds", "se"]
COMPARISON_COLUMNS = [
    "label", "head", "protocol", "quality", "mean", "std", "n_seeds", "delta_vs_adaface", "ci_lo", "ci_hi",
    "p_value", "test", "n_pairs", "paper_value", "paper_setting",
]
ABLATION_COLUMNS = ["factor", "setting", "label", "is_reference", "set", "mean", "std", "n_seeds"]
ABLATION_FACTORS = ("h", "m", "proxy")
HEAD_DISPLAY = {"normface": "NormFace", "cosface": "CosFace", "arcface": "ArcFace",
                "curricularface": "CurricularFace", "magface": "MagFace", "adaface": "AdaFace"}


def aggregate(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per label and protocol: mean, std, n_seeds, se (see the module docstring)."""
    rows = []
    for (label, protocol), g in metrics.groupby(["label", "protocol"], sort=False):
        mean, std, n = describe(g["value"])
        se = g["se"].to_numpy(np.float64)
        se = se[np.isfinite(se)]
        first = g.iloc[0]
        rows.append({"label": label, "head": first["head"], "protocol": protocol, "family": first["family"],
                     "set": first["set"], "metric": first["metric"], "quality": first["quality"], "mean": mean,
                     "std": std, "n_seeds": n,
                     "se": float(np.sqrt((se**2).sum()) / len(se)) if len(se) == len(g) and len(se) else np.nan})
    return _sorted(pd.DataFrame(rows, columns=AGGREGATE_COLUMNS))


def _family_order() -> dict[str, int]:
    """Table order of the evaluation-set families (verification, ijb, identification, then added ones)."""
    return {fmt.family: i for i, fmt in enumerate(eval_sets())}


def _protocol_key(protocol: pd.Series) -> pd.Series:
    fam = protocol.str.split("/").str[0].map(_family_order()).fillna(9)
    return fam.astype(int).astype(str) + protocol


def _sorted(frame: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    if frame.empty:
        return frame.reset_index(drop=True)
    head_rank = frame["head"].map({h: i for i, h in enumerate(HEAD_NAMES)}).fillna(99)
    ref_rank = (frame["label"] != reference).astype(int) if reference is not None else 0
    key = pd.DataFrame({"ref": ref_rank, "head": head_rank, "label": frame["label"],
                        "protocol": _protocol_key(frame["protocol"])})
    return frame.loc[key.sort_values(["ref", "head", "label", "protocol"], kind="stable").index].reset_index(drop=True)


def seed_values(metrics: pd.DataFrame, label: str, protocol: str) -> dict[int, float]:
    """``{seed: value}`` of one label on one protocol."""
    g = metrics[(metrics["label"] == label) & (metrics["protocol"] == protocol)]
    return {int(s): float(v) for s, v in zip(g["seed"], g["value"])}


def reference_label(runs: pd.DataFrame) -> str | None:
    """The reference AdaFace label (default head parameters, norm proxy; ``main`` preferred), or None."""
    ada = runs[runs["head"] == "adaface"]
    if ada.empty:
        return None
    default = ada[ada["is_default"]]
    for pool in (default[default["tags"].map(lambda t: "main" in t)], default,
                 ada[ada["tags"].map(lambda t: "main" in t)]):
        if not pool.empty:
            return str(pool["label"].iloc[0])
    return None


def main_labels(runs: pd.DataFrame) -> list[str]:
    """Labels with at least one run tagged ``main``; every label when no run is tagged ``main``."""
    tagged = runs[runs["tags"].map(lambda t: "main" in t)]
    pool = tagged if not tagged.empty else runs
    return list(dict.fromkeys(pool["label"]))


def _is_default(runs: pd.DataFrame, label: str) -> bool:
    sub = runs[runs["label"] == label]
    return bool(len(sub)) and bool(sub["is_default"].all())


def comparison_table(metrics: pd.DataFrame, runs: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """The main comparison (``comparison.csv``; see the module docstring)."""
    reference = reference if reference is not None else reference_label(runs)
    labels = main_labels(runs)
    if reference is not None and reference not in labels:
        labels = [reference, *labels]
    sub = metrics[metrics["label"].isin(labels)]
    agg = aggregate(sub)
    ref_means = agg[agg["label"] == reference].set_index("protocol")["mean"] if reference is not None else pd.Series(dtype=float)
    rows = []
    for row in agg.itertuples(index=False):
        out = {c: getattr(row, c) for c in ("label", "head", "protocol", "quality", "mean", "std", "n_seeds")}
        ref_mean = ref_means.get(row.protocol, np.nan)
        out["delta_vs_adaface"] = row.mean - ref_mean if np.isfinite(ref_mean) else np.nan
        if row.label == reference:
            out.update(ci_lo=np.nan, ci_hi=np.nan, p_value=np.nan, test="reference", n_pairs=row.n_seeds)
        elif reference is None:
            out.update(ci_lo=np.nan, ci_hi=np.nan, p_value=np.nan, test="n/a", n_pairs=0)
        else:
            paired = paired_difference(seed_values(sub, row.label, row.protocol), seed_values(sub, reference, row.protocol))
            out.update(ci_lo=paired.ci_lo, ci_hi=paired.ci_hi, p_value=paired.p_value, test=paired.test, n_pairs=paired.n_pairs)
        value, setting = (None, "")
        if _is_default(runs, row.label):
            value, setting = paper_value(row.head, row.family, row.set, row.metric)
        out["paper_value"] = np.nan if value is None else value
        out["paper_setting"] = setting
        rows.append(out)
    frame = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    return _sorted(frame, reference)


def _setting(factor: str, run: pd.Series) -> str:
    if factor == "proxy":
        return f"proxy={run['proxy']}"
    value = run["head_params"].get(factor)
    return f"{factor}={float(value):g}" if value is not None else f"{factor}=?"


def _setting_sort_key(setting: str) -> tuple:
    _, _, value = setting.partition("=")
    order = {"norm": 0, "brisque": 1, "p_yi": 2}
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, order.get(value, 9), value)


def ablation_table(metrics: pd.DataFrame, runs: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """Table 1 (``ablation.csv``; see the module docstring)."""
    reference = reference if reference is not None else reference_label(runs)
    agg = aggregate(metrics)
    first_run = runs.drop_duplicates("label").set_index("label")
    rows = []
    for factor in ABLATION_FACTORS:
        tagged = runs[(runs["head"] == "adaface") & runs["tags"].map(lambda t, f=factor: f"ablation_{f}" in t)]
        labels = list(dict.fromkeys(tagged["label"]))
        if not labels:
            continue
        if reference is not None and reference not in labels:
            labels.insert(0, reference)
        entries = sorted(((_setting(factor, first_run.loc[lab]), lab) for lab in labels), key=lambda e: _setting_sort_key(e[0]))
        for setting, lab in entries:
            for r in agg[agg["label"] == lab].itertuples(index=False):
                rows.append({"factor": factor, "setting": setting, "label": lab, "is_reference": lab == reference,
                             "set": r.protocol, "mean": r.mean, "std": r.std, "n_seeds": r.n_seeds})
    if rows:
        curr = runs[runs["head"] == "curricularface"]
        tagged = curr[curr["tags"].map(lambda t: any(tag.startswith("ablation_") for tag in t))]
        pool = tagged if not tagged.empty else curr[curr["is_default"]]
        for lab in dict.fromkeys(pool["label"]):
            for r in agg[agg["label"] == lab].itertuples(index=False):
                rows.append({"factor": "baseline", "setting": "CurricularFace", "label": lab, "is_reference": False,
                             "set": r.protocol, "mean": r.mean, "std": r.std, "n_seeds": r.n_seeds})
    frame = pd.DataFrame(rows, columns=ABLATION_COLUMNS)
    if not frame.empty:
        frame["_p"] = _protocol_key(frame["set"])
        frame = frame.sort_values(["_p"], kind="stable").drop(columns="_p")
        order = {f: i for i, f in enumerate((*ABLATION_FACTORS, "baseline"))}
        frame = frame.sort_values("factor", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    return frame


def decision_protocols(protocols: list[str] | pd.Series) -> list[str]:
    """One protocol per benchmark set for verdicts: each verification set's accuracy, each IJB set's
    TAR@FAR=1e-04 (or its lowest supported FAR when 1e-4 is not supported), each identification set's rank-1."""
    protocols = list(dict.fromkeys(protocols))
    order = _family_order()
    chosen: list[str] = []
    for fmt in eval_sets():  # each format picks among its own family's protocols
        chosen += fmt.decision_protocols([p for p in protocols if p.partition("/")[0] == fmt.family])
    return sorted(dict.fromkeys(chosen), key=lambda p: (order.get(p.partition("/")[0], 9), p))


def primary_low_quality_protocol(protocols: list[str] | pd.Series, quality: dict[str, str]) -> str | None:
    """The protocol the ablation verdicts are decided on: the first low-quality verification set, else
    the first IJB set (TAR@FAR=1e-04 or lowest supported FAR), else the first identification rank-1."""
    candidates = [p for p in decision_protocols(protocols) if quality.get(p) == "low"]
    for family in (fmt.family for fmt in eval_sets()):
        for p in candidates:
            if p.startswith(family + "/"):
                return p
    return None
