"""``scale_fit.json`` of the scale study: the method, the report's headline sentence, every fit of
:mod:`.scale` and the training-length pairs of :mod:`.training_length`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from marginlab.analysis.paper_numbers import PAPER_IMAGES_SEEN
from marginlab.analysis.scale import FIT_METHOD, MIN_DISTINCT, REFERENCE
from marginlab.analysis.training_length import PAIR_METHOD, pairs_sentence

__all__ = ["headline", "scale_summary"]


def headline(fits: list[Mapping[str, Any]], skipped: Mapping[str, str], pairs: Mapping[str, Any] | None = None) -> str:
    """The report's one sentence: AdaFace's norm–IQ fit over all sizes (else the first head's), or why none;
    followed by the training-length pairs' sentence when there are pairs (:func:`training_length_pairs`)."""
    extra = pairs_sentence(pairs)
    extra = f" {extra}" if extra else ""
    lines = [f for f in fits if f["model"] == "log10(images_seen)" and f["scope"] == "all sizes"]
    for pick in ([f for f in lines if f["head"] == "adaface" and f["target"] == "iq"],
                 [f for f in lines if f["target"] == "iq"], lines):
        if pick:
            return pick[0]["statement"] + extra
    return (f"No scale trend can be stated: no run has both a train summary and clean-probe correlations "
            f"({len(skipped)} run{'s' if len(skipped) != 1 else ''} skipped).{extra}")


def _json_safe(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def scale_summary(fits: list[Mapping[str, Any]], skipped: Mapping[str, str], confidence: float,
                  pairs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``scale_fit.json``: the method, the headline sentence, every fit (non-finite numbers as null), the
    skipped runs with their reasons, the paper's images seen and, when given, ``training_length_pairs``
    (:func:`training_length_pairs`)."""
    out = {"method": FIT_METHOD, "confidence": confidence, "min_distinct_images_seen": MIN_DISTINCT,
           "reference": {t: r for t, r in REFERENCE.items() if r is not None},
           "reference_images_seen": PAPER_IMAGES_SEEN,
           "headline": headline(fits, skipped, pairs),
           "fits": [{k: _json_safe(v) for k, v in f.items()} for f in fits], "skipped": dict(skipped)}
    if pairs is not None:
        out["training_length_pairs"] = {
            "method": pairs.get("method", PAIR_METHOD),
            "pairs": [{k: _json_safe(v) for k, v in p.items()} for p in pairs.get("pairs", [])],
            "summary": [{k: _json_safe(v) for k, v in s.items()} for s in pairs.get("summary", [])],
            "not_paired": dict(pairs.get("not_paired", {}))}
    return out
