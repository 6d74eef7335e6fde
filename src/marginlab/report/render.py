"""The self-contained HTML report: ``run_report(root=".", out="reports/report.html")``.

One HTML file, rendered with Jinja2 (autoescape on) from ``templates/report.html.j2``: CSS inline, every
figure a base64 PNG data URI, no scripts, fonts or external URLs, so it opens from disk anywhere.
Sections, in order:

1. summary of claims (``analysis/claims.json``, :mod:`.claims_section`): a verdict badge per *part* of each
   claim, each qualified "at this scale: N images seen, R× fewer than the paper" (:func:`.scale_banner.images_seen`:
   steps × global batch of the reference runs against :data:`~marginlab.analysis.paper_numbers.PAPER_IMAGES_SEEN`),
   the claim's combined verdict as secondary text, the rule and the deciding numbers of every part; a claim with
   a registered figure (claim 1: the whole correlation-vs-progress curve) shows it beside its curve part;
2. Table 1, the ablations (``analysis/ablation.csv``): mean ± std over seeds per factor, setting and
   benchmark, beside the paper's qualitative conclusion (its numbers are not available);
3. main comparison (``analysis/comparison.csv``): our mean ± std, Δ vs AdaFace with its 95 % CI and
   paired test, and the paper's number in its own columns, with the scale difference (data, backbone,
   epochs) stated above the table;
4. Fig. 2 (``analysis/figures``; every analysis figure is shown in the section, order and caption it is
   registered with, :mod:`.figure_list`): norm / P_yi vs quality, correlation over epochs, final-epoch
   correlations with CIs (``correlation.csv``), augmentation by norm (``augmentation.csv``);
   4b. scale: final norm–quality correlation against images seen, its fits and the one-sentence answer
   (``scale.csv``, ``scale_fit.json``; :mod:`.scale`);
   4c. did the margin adapt? AdaFace's ẑ over the probe images (``zhat.csv``, ``zhat_by_progress.png``;
   :mod:`.zhat_section`);
   4d. released models: norm–quality correlations, the paired augmentation test and the protocols of models
   trained elsewhere at the paper's scale (``released/<name>/metrics.json``; :mod:`.released_section`);
5. Fig. 3 (``analysis/gst``): |GST| maps and curves, with the hard/easy emphasis ratios;
6. training curves and the state of every run in ``params.runs``;
7. data and quality: manifest counts, ``samples.png``, BRISQUE/IQ histograms and per-degradation
   Spearman(IQ, ground truth) from ``<quality.output_dir>/summary.json``;
8. provenance (:mod:`.provenance`).

Displayed rounding (the tests compare the HTML with the CSV/JSON values through these): benchmark values
in percent with 2 decimals (``mean ± std``; std omitted with one seed), p-values with 3 significant
digits, correlations with 3 decimals, GST values with 2 decimals.

The scale banner (model, input size, data, epochs, images seen against the paper; :mod:`.scale_banner`) is
shown for every data source. Number formatting lives in :mod:`.formatting`; sections with their own logic
in their own modules (claims, scale, ẑ, figure lists).
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
    PAPER_SCALE,
)
from marginlab.core.config import Params
from marginlab.evalsets import eval_sets
from marginlab.core.io import atomic_path
from marginlab.core.hyperparameters import format_hyperparameter
from marginlab.report import plots as rfig
from marginlab.analysis.figure_specs import figure_specs
from marginlab.report.claims_section import claims_section
from marginlab.report.figure_list import GST_FIGURES, claim_figures, figure_entries, section_figures
from marginlab.report.inputs import ReportInputs, is_missing, load_inputs
from marginlab.report.provenance import collect_provenance
from marginlab.report.scale_banner import banner, images_seen, scale_text
from marginlab.report.released_section import released_section
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


# --------------------------------------------------------------------------- sections
def _note(value: Any) -> str | None:
    return value.why if is_missing(value) else None


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
    out: dict[str, Any] = {"ours_scale": scale_text(inputs), "paper_scale": PAPER_SCALE["main"], "protocols": [],
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
    out: dict[str, Any] = {"figures": figure_entries(inputs.gst_figures, GST_FIGURES), "note": None, "summary_note": None,
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
    figures = section_figures(inputs.analysis_figures, "training")
    if figures:
        return {"note": None, "figures": figures}
    histories = {r.name: rfig.read_live_history(r.live_dir, ("train/loss", "train/acc", "train/norm_mean"))
                 for r in inputs.runs if not is_missing(r.live_dir)}
    png = rfig.training_curves({k: v for k, v in histories.items() if len(v)}) if histories else None
    if png is None:
        names = " / ".join(s.name for s in figure_specs("training")) or "training figure"
        return {"note": f"no {names} in {inputs.analysis_dir / 'figures'} and no run has live/ metrics", "figures": []}
    return {"note": None, "figures": [{"name": "training curves", "uri": rfig.png_data_uri(png),
                                       "caption": "Training loss, accuracy and feature norm per epoch (from the runs' live/ logs)"}]}


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


def build_context(inputs: ReportInputs) -> dict[str, Any]:
    """Everything the template shows (plain dicts/lists/strings; numbers already formatted)."""
    p = inputs.params
    seen = images_seen(inputs)
    figs2 = section_figures(inputs.analysis_figures, "fig2")
    claims = claims_section(inputs.claims, seen["text"], claim_figures(inputs.analysis_figures))
    provenance = collect_provenance(inputs)
    return {
        "title": f"marginlab report — {p.data.name}, preset {p.preset}",
        "dataset": p.data.name, "source": p.data.source, "preset": p.preset,
        "git": provenance["git"], "generated": provenance["generated_utc"],
        "banner": banner(inputs, seen),
        "images_seen": seen,
        "claims": claims,
        "ablation": {**_ablation(inputs.tables.get("ablation.csv")), "scale_ours": scale_text(inputs),
                     "scale_paper": PAPER_SCALE["table1"]},
        "comparison": _comparison(inputs),
        "fig2": {"figures": figs2, "note": None if figs2 else f"no figures in {inputs.analysis_dir / 'figures'} "
                                                              "(written by the 'analyze' stage)",
                 "correlations": _final_correlations(inputs.tables.get("correlation.csv")),
                 "augmentation": _augmentation(inputs.tables.get("augmentation.csv")),
                 "paper_correlation": FIG2_NORM_IQ_CORRELATION},
        "scale": scale_section(inputs),
        "zhat": zhat_section(inputs),
        "released": released_section(inputs),
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
