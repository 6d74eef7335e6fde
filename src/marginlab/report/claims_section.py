"""The report's claims section: every claim of ``analysis/claims.json``, whatever claims are registered.

Per claim its parts, each with its own verdict badge qualified "at this scale: …", the rule, the deciding
numbers (:mod:`.evidence`) and how far the verdict lies from flipping; the claim's combined verdict as
secondary text. A claim with a registered figure (:func:`.figure_list.claim_figures`) shows it beside its
curve part. Nothing here knows a claim by number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marginlab.report.evidence import layout_evidence
from marginlab.report.formatting import fmt_number
from marginlab.report.inputs import is_missing

__all__ = ["VERDICT_CLASS", "claims_section"]

VERDICT_CLASS = {"supported": "ok", "not supported": "bad", "inconclusive": "warn"}


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


def claims_section(claims: Any, scale_text: str = "",
                   figures: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The claims' context: per claim its parts, each with its own verdict badge qualified by ``scale_text``
    ("at this scale: …"); the combined verdict is kept as secondary text. ``figures``: per claim id, a figure
    (``{"name", "uri", "caption"}``, :func:`.figure_list.claim_figures`) shown with that claim's curve part."""
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
        curve = (figures or {}).get(str(c.get("id", "")))
        if curve:
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
