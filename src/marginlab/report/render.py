"""The self-contained HTML report: ``run_report(root=".", out="reports/report.html")``.

One HTML file, rendered with Jinja2 (autoescape on) from ``templates/report.html.j2``: CSS inline, every
figure a base64 PNG data URI, no scripts, fonts or external URLs, so it opens from disk anywhere.
Sections, in order:

1. summary of claims (``analysis/claims.json``): a verdict badge per *part* of each claim, each qualified
   "at this scale: N images seen, R× fewer than the paper" (:func:`images_seen`: steps × global batch of the
   reference runs against :data:`~marginlab.analysis.paper_numbers.PAPER_IMAGES_SEEN`), the claim's combined
   verdict as secondary text, the rule and the deciding numbers of every part; claim 1's early part shows the
   whole correlation-vs-progress curve;
2. Table 1, the ablations (``analysis/ablation.csv``): mean ± std over seeds per factor, setting and
   benchmark, beside the paper's qualitative conclusion (its numbers are not available);
3. main comparison (``analysis/comparison.csv``): our mean ± std, Δ vs AdaFace with its 95 % CI and
   paired test, and the paper's number in its own columns, with the scale difference (data, backbone,
   epochs) stated above the table;
4. Fig. 2 (``analysis/figures``): norm / P_yi vs quality, correlation over epochs, final-epoch
   correlations with CIs (``correlation.csv``), augmentation by norm (``augmentation.csv``);
   4b. scale: final norm–quality correlation against images seen, its fits and the one-sentence answer
   (``scale.csv``, ``scale_fit.json``; :mod:`.scale`);
   4c. did the margin adapt? AdaFace's ẑ over the probe images (``zhat.csv``, ``zhat_by_progress.png``;
   :mod:`.zhat_section`);
5. Fig. 3 (``analysis/gst``): |GST| maps and curves, with the hard/easy emphasis ratios;
6. training curves and the state of every run in ``params.runs``;
7. data and quality: manifest counts, ``samples.png``, BRISQUE/IQ histograms and per-degradation
   Spearman(IQ, ground truth) from ``<quality.output_dir>/summary.json``;
8. provenance (:mod:`.provenance`).

Displayed rounding (the tests compare the HTML with the CSV/JSON values through these): benchmark values
in percent with 2 decimals (``mean ± std``; std omitted with one seed), p-values with 3 significant
digits, correlations with 3 decimals, GST values with 2 decimals.

The scale banner (model, input size, data, epochs, images seen against the paper) is shown for every data
source. The module is one cohesive thing, the mapping from the study's outputs to the template's sections
(number formatting lives in :mod:`.formatting`), which is why it runs a little over 450 lines.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from marginlab.analysis.paper_numbers import (
    ABLATION_CONCLUSIONS,
    FIG2_NORM_IQ_CORRELATION,
    PAPER_EARLY_PROGRESS,
    PAPER_EPOCHS,
    PAPER_SCALE,
)
from marginlab.analysis.images_seen import at_scale, paper_ratio, reference_images_seen, sci
from marginlab.analysis.paper_numbers import PAPER_IMAGES_SEEN
from marginlab.analysis.scale import SCALE_FIGURE
from marginlab.config import Params
from marginlab.analysis.zhat import ZHAT_FIGURE
from marginlab.evalsets import eval_sets
from marginlab.io import atomic_path
from marginlab.hyperparameters import format_hyperparameter
from marginlab.report import plots as rfig
from marginlab.report.evidence import layout_evidence
from marginlab.report.inputs import ReportInputs, is_missing, load_inputs
from marginlab.report.provenance import collect_provenance
from marginlab.report.scale_section import scale_section
from marginlab.report.zhat_section import zhat_section
from marginlab.report.formatting import (  # noqa: F401 - re-exported for the template filters and tests
    _finite,
    fmt_corr,
    fmt_mean_std,
    fmt_number,
    fmt_p,
    fmt_seconds,
    fmt_signed,
    fmt_value,
)

__all__ = [
    "FIG2_FIGURES",
    "PAPER_SCALE",
    "build_context",
    "fmt_corr",
    "fmt_mean_std",
    "fmt_p",
    "fmt_value",
    "render_html",
    "run_report",
]

TEMPLATE = "report.html.j2"
#: Known analysis figures in display order, with captions; other PNGs there are appended.
FIG2_FIGURES = (
    ("fig2_norm_vs_iq.png", "Feature norm vs IQ (1 − BRISQUE/100) over epochs (Fig. 2a)"),
    ("fig2_pyi_vs_iq.png", "P_yi vs IQ over epochs (Fig. 2b)"),
    ("correlation_vs_progress.png", ("Correlation of norm / P_yi with IQ across training, 95 % bootstrap CIs. x: training "
                                    "progress, the share of the run's optimiser steps (symmetric-log axis, linear below "
                                    "1 %), measured by the probes at fractions of training (train.probe_progress; a run "
                                    "without them at its epoch ends); dotted: the paper's early point, epoch 1 of 26 = "
                                    f"{PAPER_EARLY_PROGRESS:.1%}; dashed: the paper's {FIG2_NORM_IQ_CORRELATION} for reference")),
    ("fig2_norm_vs_gt_quality.png", "Feature norm vs the synthetic ground-truth quality"),
    ("fig2_pyi_vs_gt_quality.png", "P_yi vs the synthetic ground-truth quality"),
    ("correlation_vs_progress_gt_quality.png", "Correlation with the ground-truth quality across training (x as above)"),
    ("augmentation_by_norm.png", "Share of augmented probe images per feature-norm bin (claim 4)"),
)
TRAINING_FIGURE = "training_curves.png"
#: Claim 1's whole curve: shown beside its early part too.
CURVE_FIGURE = "correlation_vs_progress.png"
GST_FIGURES = (
    ("fig3_gst_maps.png", ("Fig. 3: |GST| maps of every registered head in each of its GST states (bold titles: the "
                           "paper's Fig. 3 panels). x: target cos θ_y, y: non-target cos θ_j (the cosine plane of issue "
                           "#24, not the paper's angle drawing); ○ easy and △ hard sample; colour scale shared, clipped "
                           "at the 99th percentile.")),
    ("fig3_gst_curves.png", ("(a) |GST| against cos θ_y at the fixed non-target cosine of params gst.cos_nontarget; "
                             "(b) AdaFace at ẑ = +1 for the configured m and larger margins: the head code clips the "
                             "shifted angle at θ − m ≥ eps, so GST = 0 beyond cos m (dotted).")),
    ("fig3_gst_state_levels.png", ("Every head with several GST states, at its levels and the midpoints between them: "
                                   "e.g. AdaFace from ẑ = −1 (ArcFace) through 0 (CosFace) to +1, MagFace from l_a to u_a.")),
)
VERDICT_CLASS = {"supported": "ok", "not supported": "bad", "inconclusive": "warn"}


# --------------------------------------------------------------------------- sections
def _note(value: Any) -> str | None:
    return value.why if is_missing(value) else None


def _decision(d: Any, verdict: str) -> dict[str, Any]:
    """How far a verdict lies from flipping (``decision`` of claims.json) as a short text and a borderline flag."""
    if not isinstance(d, Mapping):
        return {"text": "", "borderline": False}
    dist = d.get("distance_se")
    if dist is None:
        if "analytic" in str(d.get("deciding", "")):
            text = "exact (no sampling noise)"
        elif d.get("to_supported_se") is not None or d.get("to_not_supported_se") is not None:
            text = "held back by a condition that is not a noise threshold"
        else:
            text = "distance unknown (no noise estimate)"
    elif verdict in ("supported", "not supported"):
        text = f"{fmt_number(abs(dist))} SE {'past' if dist >= 0 else 'short of'} the threshold"
    else:
        text = f"{fmt_number(abs(dist))} SE short of the nearer decisive verdict"
    return {"text": text, "borderline": bool(d.get("borderline"))}


def _curve_part(parts: list[dict[str, Any]], raw: list[Any]) -> int | None:
    """Index of the part the training-progress figure goes with: the first whose numbers hold a list of records
    (a per-probe curve), else the first that speaks of "early", else the second part, else the first."""
    for i, p in enumerate(raw):
        numbers = p.get("numbers") if isinstance(p, Mapping) else None
        if isinstance(numbers, Mapping) and any(isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v)
                                                 for v in _nested_values(numbers)):
            return i
    for i, p in enumerate(parts):
        if "early" in f"{p['name']} {p['rule']}".lower():
            return i
    return (1 if len(parts) > 1 else 0) if parts else None


def _nested_values(numbers: Mapping[str, Any]) -> list[Any]:
    """The values of ``numbers`` and of the mappings inside it (one level down: per-run curves)."""
    out = []
    for v in numbers.values():
        out.append(v)
        if isinstance(v, Mapping):
            out += list(v.values())
    return out


def _claims(claims: Any, scale_text: str = "", curve: dict[str, Any] | None = None) -> dict[str, Any]:
    """The claims' context: per claim its parts, each with its own verdict badge qualified by ``scale_text``
    ("at this scale: …"); the combined verdict is kept as secondary text. ``curve``: the training-progress figure
    (``{"uri", "caption"}``) shown with claim 1's early part."""
    empty = {"items": [], "counts": {}, "claim_counts": {}, "reference": None, "missing_runs": [], "at_scale": scale_text}
    if is_missing(claims):
        return {**empty, "note": claims.why}
    items = claims.get("claims") if isinstance(claims, Mapping) else claims
    if not isinstance(items, list):
        return {**empty, "note": "claims.json holds neither a list of claims nor a {'claims': [...]} object"}
    out = []
    for c in items:
        if not isinstance(c, Mapping):
            continue
        verdict = str(c.get("verdict", "not available"))
        numbers = c.get("numbers", c.get("evidence"))
        parts = []
        for p in c.get("parts", []) or []:
            pv = str(p.get("verdict", "not available"))
            scalars, tables = layout_evidence(p.get("numbers"), fmt_number)
            parts.append({"name": p.get("name", ""), "verdict": pv, "cls": VERDICT_CLASS.get(pv, "na"),
                          "rule": p.get("rule", ""), "numbers": scalars, "tables": tables,
                          "decision": _decision(p.get("decision"), pv), "at_scale": scale_text, "figure": None})
        raw_parts = [p for p in c.get("parts", []) or [] if isinstance(p, Mapping)]
        if curve and str(c.get("id", "")) == "1":
            at = _curve_part(parts, raw_parts)
            if at is not None:
                parts[at]["figure"] = curve
        headline = parts or [{"name": "", "verdict": verdict, "cls": VERDICT_CLASS.get(verdict, "na"), "rule": "",
                              "decision": _decision(c.get("decision"), verdict), "at_scale": scale_text}]
        scalars, tables = layout_evidence(numbers, fmt_number)
        out.append({
            "id": c.get("id", ""), "title": c.get("title", ""), "statement": c.get("statement", ""),
            "paper": c.get("paper", ""), "verdict": verdict, "cls": VERDICT_CLASS.get(verdict, "na"),
            "rule": c.get("rule", ""), "note": c.get("note", ""),
            "numbers": scalars, "tables": tables,
            "evidence_text": numbers if isinstance(numbers, str) else "",
            "parts": parts, "headline": headline, "decision": _decision(c.get("decision"), verdict),
        })
    counts = {v: sum(1 for c in out for p in c["headline"] if p["verdict"] == v) for v in VERDICT_CLASS}
    claim_counts = {v: sum(1 for c in out if c["verdict"] == v) for v in VERDICT_CLASS}
    meta = claims if isinstance(claims, Mapping) else {}
    return {"note": None if out else "claims.json lists no claims", "items": out, "counts": counts,
            "claim_counts": claim_counts, "reference": meta.get("reference"), "missing_runs": meta.get("missing") or [],
            "at_scale": scale_text}


def _ablation(frame: Any) -> dict[str, Any]:
    if is_missing(frame):
        return {"note": frame.why, "groups": []}
    if frame.empty:
        return {"note": "ablation.csv has no rows: no runs tagged ablation_h / ablation_m / ablation_proxy have metrics",
                "groups": []}
    factor_order = {"h": 0, "m": 1, "proxy": 2, "baseline": 3}
    groups = []
    for factor, g in sorted(frame.groupby("factor", sort=False), key=lambda kv: (factor_order.get(kv[0], 9), kv[0])):
        sets = list(dict.fromkeys(g["set"]))
        rows = []
        for (setting, label), r in g.groupby(["setting", "label"], sort=False):
            by_set = {s: r[r["set"] == s].iloc[0] for s in sets if (r["set"] == s).any()}
            ref = bool(r["is_reference"].astype(bool).any()) if "is_reference" in r else False
            rows.append({"setting": setting, "label": label, "reference": ref,
                         "n_seeds": int(r["n_seeds"].max()) if r["n_seeds"].notna().any() else 0,
                         "cells": [fmt_mean_std(by_set[s]["mean"], by_set[s]["std"]) if s in by_set else "—" for s in sets]})
        groups.append({"factor": str(factor), "sets": sets, "rows": rows,
                       "conclusion": ABLATION_CONCLUSIONS.get(str(factor), "")})
    return {"note": None, "groups": groups}


def _scale(inputs: ReportInputs) -> str:
    p = inputs.params
    counts = inputs.manifest.get("counts", {}) if isinstance(inputs.manifest, Mapping) else {}
    images, classes = counts.get("train_images"), counts.get("train_classes")
    size = f"{images:,} images of {classes:,} identities" if images and classes else ""
    if p.data.source == "synthetic":
        data = "synthetic faces" + (f" ({size})" if size else "")
    else:
        data = f"{p.data.name} ({p.data.source}" + (f", {size}" if size else "") + ")"
    width = f", width ×{p.model.width:g}" if p.model.backbone.startswith("ir_") and p.model.width != 1.0 else ""
    return (f"{p.model.backbone.upper().replace('_', '-')}{width} at {p.model.input_size}×{p.model.input_size} on {data}, "
            f"{p.train.epochs} epochs, batch {p.train.batch_size}")


def _families_missing(inputs: ReportInputs, protocols: list[str]) -> list[str]:
    have = {str(p).split("/")[0] for p in protocols}
    notes = []
    d = inputs.params.data
    for fmt in eval_sets():
        if fmt.family in have:
            continue
        why = fmt.unavailable(d) or "no rows for it in analysis/comparison.csv (no run evaluated on such a set)"
        notes.append(f"{fmt.title}: not available: {why}")
    return notes


def _comparison(inputs: ReportInputs) -> dict[str, Any]:
    frame = inputs.tables.get("comparison.csv")
    out: dict[str, Any] = {"ours_scale": _scale(inputs), "paper_scale": PAPER_SCALE["main"], "protocols": [],
                           "family_notes": [], "labels": []}
    if is_missing(frame):
        return {**out, "note": frame.why}
    if frame.empty:
        return {**out, "note": "comparison.csv has no rows: no run tagged 'main' has metrics"}
    protocols = []
    for protocol, g in frame.groupby("protocol", sort=False):
        rows = []
        for r in g.itertuples(index=False):
            rows.append({
                "label": r.label, "head": r.head,
                "ours": fmt_mean_std(r.mean, r.std), "n_seeds": int(r.n_seeds) if _finite(r.n_seeds) is not None else 0,
                "delta": fmt_signed(r.delta_vs_adaface),
                "ci": f"[{fmt_signed(r.ci_lo)}, {fmt_signed(r.ci_hi)}]" if _finite(r.ci_lo) is not None else "—",
                "p": fmt_p(r.p_value), "test": "" if pd.isna(r.test) else str(r.test),
                "paper": fmt_value(r.paper_value), "paper_setting": "" if pd.isna(r.paper_setting) else str(r.paper_setting),
                "reference": str(r.test) == "reference",
            })
        protocols.append({"protocol": str(protocol), "rows": rows})
    return {**out, "note": None, "protocols": protocols,
            "family_notes": _families_missing(inputs, [p["protocol"] for p in protocols]),
            "labels": list(dict.fromkeys(frame["label"]))}


def _figure_entries(paths: Mapping[str, Path], known: tuple[tuple[str, str], ...], skip: tuple[str, ...] = ()) -> list[dict]:
    out, seen = [], set(skip)
    for name, caption in known:
        if name in paths:
            out.append({"name": name, "caption": caption, "uri": rfig.png_data_uri(paths[name])})
            seen.add(name)
    for name, path in paths.items():
        if name not in seen and name not in {k for k, _ in known}:
            out.append({"name": name, "caption": name, "uri": rfig.png_data_uri(path)})
    return out


CORRELATION_PAIRS = (("norm", "iq"), ("norm", "gt_quality"), ("p_yi", "iq"), ("p_yi", "gt_quality"))


def _final_correlations(frame: Any) -> dict[str, Any]:
    """One row per run: final-epoch clean-pass Spearman ρ and Pearson r (with CIs) per (quantity, target)."""
    if is_missing(frame):
        return {"note": frame.why, "rows": [], "pairs": []}
    clean = frame[frame["pass"] == "clean"]
    if clean.empty:
        return {"note": "correlation.csv has no clean-probe rows (no run has probe tables)", "rows": [], "pairs": []}
    last = clean[clean["epoch"] == clean.groupby("run")["epoch"].transform("max")]
    present = set(zip(last["quantity"], last["target"]))
    pairs = [p for p in CORRELATION_PAIRS if p in present] + sorted(present - set(CORRELATION_PAIRS))
    rows = []
    for run, g in sorted(last.groupby("run", sort=False), key=lambda kv: (str(kv[1]["label"].iloc[0]), str(kv[0]))):
        cells = []
        for q, t in pairs:
            hit = g[(g["quantity"] == q) & (g["target"] == t)]
            if hit.empty:
                cells.append(None)
                continue
            r = hit.iloc[0]
            cells.append({"spearman": fmt_corr(r["spearman"]), "spearman_ci": f"[{fmt_corr(r['spearman_lo'])}, {fmt_corr(r['spearman_hi'])}]",
                          "pearson": fmt_corr(r["pearson"]), "pearson_ci": f"[{fmt_corr(r['pearson_lo'])}, {fmt_corr(r['pearson_hi'])}]",
                          "quantity": q, "target": t})
        first = g.iloc[0]
        rows.append({"run": run, "label": first["label"], "epoch": int(first["epoch"]), "n": int(g["n"].max()), "cells": cells})
    return {"note": None, "rows": rows, "pairs": [f"{q} vs {t}" for q, t in pairs]}


def _augmentation(frame: Any) -> dict[str, Any]:
    if is_missing(frame):
        return {"note": frame.why, "rows": []}
    if frame.empty:
        return {"note": "augmentation.csv has no rows (no run has an augmented probe pass)", "rows": []}
    rows = []
    for run, g in frame.groupby("run", sort=False):
        g = g.sort_values("norm_bin")
        lo, hi = g.iloc[0], g.iloc[-1]
        rows.append({"run": run, "label": lo["label"], "epoch": int(lo["epoch"]), "bins": len(g),
                     "low": [fmt_value(lo[c], 3) for c in ("share_any", "share_crop", "share_lowres", "share_photometric")],
                     "high": [fmt_value(hi[c], 3) for c in ("share_any", "share_crop", "share_lowres", "share_photometric")]})
    return {"note": None, "rows": rows}


def _fig3(inputs: ReportInputs) -> dict[str, Any]:
    out: dict[str, Any] = {"figures": _figure_entries(inputs.gst_figures, GST_FIGURES), "note": None, "summary_note": None,
                           "emphasis": [], "points": {"easy": None, "hard": None}, "special": [], "flat": [], "layout": ""}
    if not out["figures"]:
        out["note"] = inputs.gst_note.why if inputs.gst_note else "no GST figures"
    s = inputs.gst_summary
    if isinstance(s, Mapping):
        panels = (s.get("emphasis") or {}).get("panels") or {}
        # in figure order (the summary's panel list: head table order), whatever order the JSON keys have
        order = [p.get("key") for p in s.get("panels") or [] if isinstance(p, Mapping)]
        keys = [k for k in order if k in panels] + [k for k in panels if k not in order]
        out["emphasis"] = [{"key": k, "title": panels[k].get("title", k), "easy": fmt_value(panels[k].get("easy_abs_gst")),
                            "hard": fmt_value(panels[k].get("hard_abs_gst")),
                            "ratio": fmt_value(panels[k].get("hard_over_easy"))} for k in keys]
        e = s.get("emphasis") or {}
        out["points"] = {"easy": e.get("easy_point"), "hard": e.get("hard_point")}
        sc = s.get("special_cases") or {}
        out["special"] = [{"name": k, "max_abs_diff": f"{v.get('max_abs_diff', float('nan')):.1e}",
                           "points": v.get("points_compared", v.get("points"))} for k, v in sc.items()]
        out["flat"] = [{"m": fmt_value(v.get("m"), 2), "cos_m": fmt_value(v.get("cos_m"), 3),
                        "last_nonzero": fmt_value(v.get("last_nonzero_cos_target"), 3),
                        "zero_share": fmt_value(v.get("zero_share_of_curve"), 3)}
                       for v in (s.get("flat_region") or {}).values()]
        out["layout"] = s.get("layout", "")
    else:
        out["summary_note"] = s.why if is_missing(s) else "analysis/gst/summary.json is not an object"
    return out


def _run_rows(inputs: ReportInputs) -> list[dict[str, Any]]:
    rows = []
    for run in inputs.runs:
        ts = run.train_summary if isinstance(run.train_summary, Mapping) else {}
        notes = [x.why for x in (run.train_summary, run.metrics, run.probe_epochs) if is_missing(x)]
        rows.append({
            "name": run.name, "label": run.label, "head": run.head, "seed": run.seed, "proxy": run.proxy,
            "tags": ", ".join(run.tags),
            "params": ", ".join(f"{k}={format_hyperparameter(v)}" for k, v in run.head_params.items()),
            "epochs": ts.get("epochs", "—"), "loss": fmt_value(ts.get("final_loss"), 3),
            "acc": fmt_value(ts.get("final_acc"), 3), "norm": fmt_value(ts.get("final_norm_mean"), 2),
            "ips": fmt_value(ts.get("images_per_s"), 0), "wall": fmt_seconds(ts.get("wall_time_s")) if ts else "—",
            "probe": f"{len(run.probe_epochs)} epochs" if not is_missing(run.probe_epochs) else "—",
            "metrics": "yes" if isinstance(run.metrics, Mapping) else "—",
            "notes": notes,
        })
    return rows


def _training(inputs: ReportInputs) -> dict[str, Any]:
    if TRAINING_FIGURE in inputs.analysis_figures:
        return {"note": None, "uri": rfig.png_data_uri(inputs.analysis_figures[TRAINING_FIGURE]),
                "caption": "Training loss, accuracy and feature norm per epoch (analysis stage)"}
    histories = {r.name: rfig.read_live_history(r.live_dir, ("train/loss", "train/acc", "train/norm_mean"))
                 for r in inputs.runs if not is_missing(r.live_dir)}
    png = rfig.training_curves({k: v for k, v in histories.items() if len(v)}) if histories else None
    if png is None:
        return {"note": f"no {TRAINING_FIGURE} in {inputs.analysis_dir / 'figures'} and no run has live/ metrics",
                "uri": None, "caption": ""}
    return {"note": None, "uri": rfig.png_data_uri(png), "caption": "Training loss, accuracy and feature norm per epoch (from the runs' live/ logs)"}


def _data(inputs: ReportInputs) -> dict[str, Any]:
    out: dict[str, Any] = {"facts": [], "manifest_note": None, "quality_note": None, "iq_definition": "",
                           "histograms": None, "splits": [], "by_degradation": [], "degradation_note": None}
    m = inputs.manifest
    if isinstance(m, Mapping):
        c = m.get("counts", {}) or {}
        facts = [("dataset", f"{m.get('dataset', inputs.params.data.name)} (source: {m.get('source', inputs.params.data.source)})"),
                 ("training images", c.get("train_images", "—")), ("training identities", c.get("train_classes", "—"))]
        if c.get("train_degraded_share") is not None:
            facts.append(("degraded share of training images", fmt_value(c.get("train_degraded_share"), 3)))
        for key in (fmt.name for fmt in eval_sets()):  # each format's counts in the manifest
            v = c.get(key)
            if isinstance(v, Mapping) and v:
                facts.append((key, ", ".join(f"{k}: {fmt_number(x) if not isinstance(x, Mapping) else _short(x)}"
                                             for k, x in v.items())))
        facts += [("channel order", m.get("channel_order", "—")), ("normalisation", m.get("normalisation", "—")),
                  ("face alignment", alignment_fact(m.get("alignment"))),
                  ("skipped items", len(m.get("skipped") or []))]
        out["facts"] = [(k, str(v)) for k, v in facts]
    else:
        out["manifest_note"] = m.why
    out["samples"] = rfig.png_data_uri(inputs.samples_png) if not is_missing(inputs.samples_png) else None
    out["samples_note"] = _note(inputs.samples_png)
    q = inputs.quality_summary
    if not isinstance(q, Mapping):
        out["quality_note"] = q.why if is_missing(q) else "quality summary.json is not an object"
        return out
    out["iq_definition"] = q.get("iq_definition", "")
    png = rfig.quality_histograms(q)
    out["histograms"] = rfig.png_data_uri(png) if png else None
    splits = q.get("splits") or {}
    out["splits"] = [{"split": name, "count": s.get("count"), "scored": s.get("scored"), "nan": s.get("nan"),
                      "brisque": fmt_mean_std((s.get("brisque") or {}).get("mean"), (s.get("brisque") or {}).get("std"), 1),
                      "iq": fmt_mean_std((s.get("iq") or {}).get("mean"), (s.get("iq") or {}).get("std"), 3),
                      "spearman": fmt_corr((s.get("ground_truth") or {}).get("spearman_iq_gt"))}
                     for name, s in splits.items()]
    gt = (splits.get("all") or {}).get("ground_truth")
    if isinstance(gt, Mapping) and gt.get("by_degradation"):
        rows = [{"type": "clean (no degradation)", "n": (gt.get("clean") or {}).get("n", "—"),
                 "mean_iq": fmt_value((gt.get("clean") or {}).get("mean_iq"), 3), "spearman": "—"}]
        rows += [{"type": t, "n": v.get("n", "—"), "mean_iq": fmt_value(v.get("mean_iq"), 3),
                  "spearman": fmt_corr(v.get("spearman_iq_gt"))} for t, v in gt["by_degradation"].items()]
        rows.append({"type": "all images", "n": gt.get("n", "—"), "mean_iq": "—", "spearman": fmt_corr(gt.get("spearman_iq_gt"))})
        out["by_degradation"] = rows
    else:
        out["degradation_note"] = ("no ground-truth quality (real data): Spearman(IQ, ground truth) per degradation type "
                                   "exists only for synthetic data")
    return out


def alignment_fact(entry: Any) -> str:
    """One line for the manifest's ``alignment`` entry (``data.align``): what prepare did to the faces.

    ``none`` (or a manifest older than the entry): images used as given. ``detect``: kept / images overall
    and per set, the detection rate, the statuses that occurred and the policy that decided them.
    """
    if not isinstance(entry, Mapping) or entry.get("mode", "none") == "none":
        return "none: images used as given (aligned crops expected; data.align: detect for raw photos)"
    if entry.get("mode") != "detect":
        return f"unknown mode {entry.get('mode')!r} in manifest.json"
    settings = entry.get("settings") or {}
    rate = entry.get("detection_rate")
    head = (f"detect: kept {fmt_number(entry.get('kept'))} of {fmt_number(entry.get('images'))} images"
            + (f" (a face above min_score in {100 * rate:.1f} %)" if isinstance(rate, (int, float)) else ""))
    sets = []
    for name, part in (entry.get("per_set") or {}).items():
        statuses = ", ".join(f"{k} {v}" for k, v in (part.get("statuses") or {}).items() if v)
        sets.append(f"{name}: {fmt_number(part.get('kept'))}/{fmt_number(part.get('images'))}"
                    + (f" [{statuses}]" if statuses else ""))
    policy = ", ".join(f"{k} {settings[k]}" for k in ("min_score", "no_face", "multiple_faces") if k in settings)
    return "; ".join([head] + sets + ([f"policy: {policy}"] if policy else []) + [f"per image: {entry.get('file', 'alignment.parquet')}"])


def _short(d: Mapping[str, Any]) -> str:
    keys = [k for k in ("pairs", "images", "templates", "faces", "probes", "gallery", "distractors", "identities") if k in d]
    return "{" + ", ".join(f"{k} {d[k]}" for k in keys) + "}" if keys else "{…}"


def _reference_runs(inputs: ReportInputs) -> list[str]:
    """The reference AdaFace runs: claims.json's ``reference_runs``, else the runs of its ``reference`` label,
    else every AdaFace run, else every run."""
    meta = inputs.claims if isinstance(inputs.claims, Mapping) else {}
    runs = [r for r in meta.get("reference_runs") or [] if isinstance(r, str)]
    if runs:
        return runs
    ref = meta.get("reference")
    return ([r.name for r in inputs.runs if ref is not None and r.label == ref]
            or [r.name for r in inputs.runs if r.head == "adaface"] or [r.name for r in inputs.runs])


def images_seen(inputs: ReportInputs) -> dict[str, Any]:
    """Images seen by the reference runs (steps × global batch of their train summaries; the analysis
    ``summary.json``'s ``images_seen_reference`` when no summary is there), the ratio to the paper and the
    "at this scale: …" qualifier of every verdict badge."""
    runs = _reference_runs(inputs)
    images = reference_images_seen({r.name: r.train_summary for r in inputs.runs}, runs)
    summary = inputs.analysis_summary if isinstance(inputs.analysis_summary, Mapping) else {}
    if images is None and _finite(summary.get("images_seen_reference")) is not None:
        images = int(summary["images_seen_reference"])
    ratio = paper_ratio(images)
    return {"images": images, "ratio": ratio, "runs": runs, "text": at_scale(images),
            "images_text": sci(images) if images else "—", "ratio_text": sci(ratio) if ratio else "—",
            "paper_text": sci(PAPER_IMAGES_SEEN)}


def _banner(inputs: ReportInputs, seen: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The scale banner, for every data source: model, input size, data, epochs and images seen against the paper."""
    p = inputs.params
    seen = seen or images_seen(inputs)
    title = "Scale: synthetic data, small models" if p.data.source == "synthetic" else "Scale: small models, short training"
    if seen["ratio"] is None:
        amount = "an unknown number of images (the reference runs have no train_summary.json)"
    elif seen["ratio"] >= 1:
        amount = (f"{seen['images_text']} training images seen by the reference runs, {seen['ratio_text']}× fewer than the "
                  f"paper's {seen['paper_text']} (MS1MV2's 5.8 M images × {PAPER_EPOCHS} epochs)")
    else:
        amount = (f"{seen['images_text']} training images seen by the reference runs, {sci(1 / seen['ratio'])}× more than the "
                  f"paper's {seen['paper_text']}")
    text = (f"Every number below comes from {_scale(inputs)}: {amount} — not from an IR-100 trained on MS1MV2 for "
            f"{PAPER_EPOCHS} epochs as in the paper. Every verdict holds at this scale only: the report tests the pipeline and "
            "whether the direction of each claim reproduces; absolute accuracies are not comparable with the paper's.")
    return {"title": title, "text": text}


def build_context(inputs: ReportInputs) -> dict[str, Any]:
    """Everything the template shows (plain dicts/lists/strings; numbers already formatted)."""
    p = inputs.params
    seen = images_seen(inputs)
    figs2 = _figure_entries(inputs.analysis_figures, FIG2_FIGURES, skip=(TRAINING_FIGURE, SCALE_FIGURE, ZHAT_FIGURE))
    curve = next(({"uri": f["uri"], "caption": f["caption"]} for f in figs2 if f["name"] == CURVE_FIGURE), None)
    claims = _claims(inputs.claims, seen["text"], curve)
    provenance = collect_provenance(inputs)
    return {
        "title": f"marginlab report — {p.data.name}, preset {p.preset}",
        "dataset": p.data.name, "source": p.data.source, "preset": p.preset,
        "git": provenance["git"], "generated": provenance["generated_utc"],
        "banner": _banner(inputs, seen),
        "images_seen": seen,
        "claims": claims,
        "ablation": {**_ablation(inputs.tables.get("ablation.csv")), "scale_ours": _scale(inputs),
                     "scale_paper": PAPER_SCALE["table1"]},
        "comparison": _comparison(inputs),
        "fig2": {"figures": figs2, "note": None if figs2 else f"no figures in {inputs.analysis_dir / 'figures'} "
                                                              "(written by the 'analyze' stage)",
                 "correlations": _final_correlations(inputs.tables.get("correlation.csv")),
                 "augmentation": _augmentation(inputs.tables.get("augmentation.csv")),
                 "paper_correlation": FIG2_NORM_IQ_CORRELATION},
        "scale": scale_section(inputs),
        "zhat": zhat_section(inputs),
        "fig3": _fig3(inputs),
        "training": _training(inputs),
        "runs": _run_rows(inputs),
        "data": _data(inputs),
        "provenance": provenance,
        "render_seconds": "?",
    }


def render_html(context: Mapping[str, Any]) -> str:
    """The report HTML of a :func:`build_context` dict (Jinja2, autoescape on, strict undefined)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["seconds"] = fmt_seconds
    env.tests["missing"] = is_missing
    return env.get_template(TEMPLATE).render(**context)


def run_report(root: str | Path = ".", out: str | Path = "reports/report.html", *,
               params_path: str | Path | None = None, params: Params | None = None) -> Path:
    """Render the report of the pipeline outputs under ``root`` into ``out`` (relative to ``root``), atomically.

    Raises :class:`~marginlab.report.inputs.ReportInputError` when ``params.yaml`` or ``analysis/`` is
    absent or an input file is malformed; every other missing input is shown as "not available: <why>".
    """
    t0 = time.perf_counter()
    root = Path(root)
    out = Path(out)
    out = out if out.is_absolute() else root / out
    inputs = load_inputs(root, params_path, params=params)
    context = build_context(inputs)
    context["render_seconds"] = round(time.perf_counter() - t0, 2)
    html = render_html(context)
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out
