"""The report's "Did the margin adapt?" section: AdaFace's ẑ over the probe images, from ``analysis/zhat.csv``.

Shows ``figures/zhat_by_progress.png``, a table of the final epoch's 5–95 % range of ẑ per AdaFace label
(:func:`marginlab.analysis.zhat.final_ranges`, clean pass, mean over seeds) and one sentence for the reference
label: where the margin sits between CosFace (ẑ = 0), ArcFace (ẑ = −1) and the negative angular margin of ẑ = +1.
AdaFace runs without ẑ rows are listed as "not recorded by this run's training code" (probe tables written
before the ``z_hat`` column existed); an analysis without ``zhat.csv`` gives a "not available" note.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marginlab.analysis.zhat import final_ranges
from marginlab.report.figure_list import section_figures, section_note
from marginlab.report.formatting import _finite, fmt_value
from marginlab.report.inputs import ANALYZE_HINT, ReportInputs, is_missing

__all__ = ["margin_sentence", "zhat_section"]

NOT_RECORDED = "ẑ not recorded by this run's training code (its probe tables have no finite z_hat)"


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def margin_sentence(label: str, row: Mapping[str, Any], m: float) -> str:
    """``ẑ spans [q05, q95] at the final epoch: the margin moves between CosFace (ẑ=0) and ArcFace (ẑ=−1)/negative
    margin (ẑ=+1) by at most …`` with the angular (−m·ẑ) and additive (m·(1 + ẑ)) margins it implies."""
    lo, hi = float(row["q05"]), float(row["q95"])
    reach = max(abs(lo), abs(hi))
    seeds = int(row["runs"])
    return (f"ẑ spans [{_signed(lo)}, {_signed(hi)}] at the final epoch ({label}, epoch {int(row['epoch'])}, 5–95 % of the "
            f"clean probe images, mean over {seeds} seed{'s' if seeds != 1 else ''}): the margin moves between CosFace (ẑ=0) "
            f"and ArcFace (ẑ=−1)/negative margin (ẑ=+1) by at most {100 * reach:.0f} % of the way to either end — angular margin "
            f"−m·ẑ from {_signed(-m * hi)} to {_signed(-m * lo)} rad and additive margin m·(1 + ẑ) from {m * (1 + lo):.2f} "
            f"to {m * (1 + hi):.2f}, at m = {m:g}.")


def _margin_m(inputs: ReportInputs, label: str) -> float:
    for run in inputs.runs:
        if run.label == label and _finite(run.head_params.get("m")) is not None:
            return float(run.head_params["m"])
    return float(inputs.params.heads.adaface.m)


def zhat_section(inputs: ReportInputs) -> dict[str, Any]:
    """The template's ``zhat`` context (module docstring)."""
    table = inputs.tables.get("zhat.csv")
    figures = section_figures(inputs.analysis_figures, "zhat")
    out: dict[str, Any] = {
        "figures": figures,
        "figure_note": None if figures else section_note("zhat", inputs.analysis_dir / "figures", ANALYZE_HINT),
        "note": None, "rows": [], "sentence": "", "unrecorded": [],
    }
    if table is None or is_missing(table):
        out["note"] = table.why if table is not None else "zhat.csv was not read"
        return out
    have = set(table["run"]) if len(table) else set()
    out["unrecorded"] = [f"{r.name}: {NOT_RECORDED}" for r in inputs.runs if r.head == "adaface" and r.name not in have]
    ranges = final_ranges(table)
    if ranges.empty:
        out["note"] = ("no run recorded ẑ at its epoch ends: zhat.csv has no clean-pass epoch rows (" + NOT_RECORDED + ")"
                       if len(table) else f"zhat.csv has no rows: {NOT_RECORDED}, for every run")
        return out
    meta = inputs.claims if isinstance(inputs.claims, Mapping) else {}
    reference = meta.get("reference")
    order = {label: i for i, label in enumerate(dict.fromkeys([reference, *(r.label for r in inputs.runs)]))}
    ranges = ranges.sort_values("label", key=lambda s: s.map(lambda x: order.get(x, len(order))), kind="stable")
    out["rows"] = [{"label": r["label"], "head": r["head"], "runs": int(r["runs"]), "epoch": int(r["epoch"]),
                    "range": f"[{_signed(r['q05'])}, {_signed(r['q95'])}]", "median": _signed(r["q50"]),
                    "extremes": f"[{_signed(r['q05_min'])}, {_signed(r['q95_max'])}]",
                    "clip_low": fmt_value(r["share_clip_low"], 3), "clip_high": fmt_value(r["share_clip_high"], 3)}
                   for r in ranges.to_dict("records")]
    pick = ranges[ranges["label"] == reference] if reference in set(ranges["label"]) else ranges.iloc[:1]
    row = pick.iloc[0]
    out["sentence"] = margin_sentence(str(row["label"]), row, _margin_m(inputs, str(row["label"])))
    return out
