"""The report's scale-study section: the figure, the per-run table, the fits and the one-sentence answer.

Reads ``analysis/scale.csv`` (through :data:`.inputs.ANALYSIS_SCHEMAS`), ``analysis/scale_fit.json`` and
``analysis/figures/scale_vs_images_seen.png`` (its caption: :mod:`marginlab.analysis.figure_specs.scale_figures`),
all written by the analysis stage
(:mod:`marginlab.analysis.scale`). Any preset renders: a single run gives one table row and the "no trend"
sentence; runs skipped by the analysis are listed with the reason; an analysis without the scale outputs
gives a "not available" note.

The one-sentence answer (``headline``) is the analysis's: the trend over images seen, whether the slope's
interval includes the slope needed to reach the paper's value at the paper's scale, and — where runs of one
data size and seed differ only in epochs and share their probe images — the paired training-length
difference (``training_length_pairs`` of ``scale_fit.json``), which the context also carries as
``training_length`` (``statements``, per-pair ``pairs`` and ``not_paired`` reasons); its method joins the
fit's in ``method``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from marginlab.analysis.scale import TARGETS
from marginlab.report.figure_list import section_figures, section_note
from marginlab.report.formatting import _finite, fmt_corr
from marginlab.report.inputs import ANALYZE_HINT, ReportInputs, is_missing, read_json

__all__ = ["scale_section"]

def _ci(row: Mapping[str, Any], target: str) -> dict[str, str]:
    col = f"spearman_{target}"
    if _finite(row.get(col)) is None:
        return {"value": "—", "ci": ""}
    return {"value": fmt_corr(row[col]), "ci": f"[{fmt_corr(row[f'{col}_lo'])}, {fmt_corr(row[f'{col}_hi'])}]"}


def _run_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"run": r["run"], "label": r["label"], "head": r["head"], "identities": int(r["identities"]),
             "train_images": f"{int(r['train_images']):,}", "epochs": int(r["epochs"]), "steps": f"{int(r['steps']):,}",
             "images_seen": f"{int(r['images_seen']):,}", "cells": [_ci(r, t) for t in TARGETS]}
            for r in table.to_dict("records")]


def _slope(fit: Mapping[str, Any], name: str) -> str:
    if fit.get(name) is None:
        return "—"
    return f"{fit[name]:+.3f} [{fit[f'{name}_lo']:+.3f}, {fit[f'{name}_hi']:+.3f}]"


def _fit_rows(fits: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"head": f["head"], "target": TARGETS.get(f["target"], f["target"]), "scope": f["scope"], "model": f["model"],
             "n": f["n_points"], "slope": _slope(f, "slope"), "size_slope": _slope(f, "size_slope"),
             "statement": f.get("statement", "")} for f in fits]


def scale_section(inputs: ReportInputs) -> dict[str, Any]:
    """The template's ``scale`` context (module docstring); ``note`` says why a part is not available."""
    table = inputs.tables.get("scale.csv")
    fit = read_json(inputs.analysis_dir / "scale_fit.json", ANALYZE_HINT)
    figures = section_figures(inputs.analysis_figures, "scale")
    out: dict[str, Any] = {
        "targets": list(TARGETS.values()), "figures": figures,
        "figure_note": None if figures else section_note("scale", inputs.analysis_dir / "figures", ANALYZE_HINT),
        "note": table.why if is_missing(table) else None, "rows": [], "fit_note": fit.why if is_missing(fit) else None,
        "headline": "", "method": "", "fits": [], "skipped": [],
        "training_length": {"statements": [], "pairs": [], "not_paired": []},
    }
    if not is_missing(table):
        out["rows"] = _run_rows(table)
        if table.empty:
            out["note"] = "scale.csv has no rows: no run has both a train summary and clean-probe correlations"
    if isinstance(fit, Mapping):
        out.update(headline=fit.get("headline", ""), method=fit.get("method", ""), fits=_fit_rows(fit.get("fits") or []),
                   skipped=[f"{run}: {why}" for run, why in (fit.get("skipped") or {}).items()])
        pairs = fit.get("training_length_pairs")
        if isinstance(pairs, Mapping):
            out["training_length"] = {
                "statements": [s.get("statement", "") for s in pairs.get("summary") or []],
                "pairs": [_pair_row(p) for p in pairs.get("pairs") or []],
                "not_paired": [f"{name}: {why}" for name, why in (pairs.get("not_paired") or {}).items()],
            }
            if pairs.get("method"):
                out["method"] = f"{out['method']}; training-length pairs: {pairs['method']}"
    return out


def _pair_row(pair: Mapping[str, Any]) -> dict[str, Any]:
    """One training-length pair for a table: runs, sizes, both Spearman values and the difference with its CI."""
    def corr(v: Any) -> str:
        return fmt_corr(v) if _finite(v) is not None else "—"

    return {"head": pair["head"], "target": TARGETS.get(pair["target"], pair["target"]), "identities": pair["identities"],
            "runs": f"{pair['short_run']} → {pair['long_run']}", "epochs": f"{pair['short_epochs']} → {pair['long_epochs']}",
            "n_images": pair["n_images"], "short": corr(pair.get("spearman_short")), "long": corr(pair.get("spearman_long")),
            "difference": (f"{pair['difference']:+.3f} [{pair['difference_lo']:+.3f}, {pair['difference_hi']:+.3f}]"
                           if _finite(pair.get("difference_lo")) is not None else f"{pair['difference']:+.3f}"),
            "bootstrap": pair.get("bootstrap", "")}
