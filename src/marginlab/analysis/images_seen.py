"""How many training images our runs saw, against the paper's: the "at this scale" qualifier of every verdict.

A run's images seen = its optimiser steps × its global batch (``global_steps`` × ``batch_size`` of its
``train_summary.json``, as :func:`.scale.scale_table` counts them). The reference runs' count is the median
over the reference AdaFace runs that have a train summary (they share one configuration, so the median is
their common value). The ratio is :data:`.paper_numbers.PAPER_IMAGES_SEEN` (MS1MV2's 5.8 M images × 26
epochs) divided by ours: how many times fewer images our runs saw.

:func:`at_scale` writes the qualifier, e.g. ``at this scale: 1.4×10⁴ images seen, 1.1×10⁴× fewer than the
paper``; :func:`summary_keys` gives the ``summary.json`` keys of the analysis stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from marginlab.analysis.paper_numbers import PAPER_IMAGES_SEEN

__all__ = ["at_scale", "paper_ratio", "reference_images_seen", "run_images_seen", "sci", "summary_keys"]

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def run_images_seen(summary: Any) -> int | None:
    """``global_steps × batch_size`` of one ``train_summary.json`` (None when either is absent)."""
    if not isinstance(summary, Mapping):
        return None
    steps, batch = summary.get("global_steps"), summary.get("batch_size")
    try:
        steps, batch = int(steps), int(batch)
    except (TypeError, ValueError):
        return None
    return steps * batch if steps > 0 and batch > 0 else None


def reference_images_seen(summaries: Mapping[str, Any], runs: Iterable[str]) -> int | None:
    """Median images seen over ``runs`` that have a usable train summary (None when none has)."""
    counts = [c for c in (run_images_seen(summaries.get(r)) for r in runs) if c is not None]
    return int(np.median(counts)) if counts else None


def paper_ratio(images_seen: float | None) -> float | None:
    """How many times fewer images than the paper (``PAPER_IMAGES_SEEN / images_seen``)."""
    if images_seen is None or not np.isfinite(images_seen) or images_seen <= 0:
        return None
    return float(PAPER_IMAGES_SEEN) / float(images_seen)


def sci(x: float, digits: int = 2) -> str:
    """``x`` as ``1.4×10⁴`` (``digits`` significant digits); plain below 1000 (``576``, ``2.6``)."""
    if not np.isfinite(x):
        return "—"
    if abs(x) < 1000:
        return f"{x:.0f}" if abs(x) >= 10 ** (digits - 1) else f"{x:.{digits}g}"
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def at_scale(images_seen: float | None) -> str:
    """The qualifier of a verdict: ``at this scale: 1.4×10⁴ images seen, 1.1×10⁴× fewer than the paper``."""
    ratio = paper_ratio(images_seen)
    if ratio is None:
        return "at this scale (images seen unknown: the reference runs have no train_summary.json)"
    if ratio >= 1:
        return f"at this scale: {sci(images_seen)} images seen, {sci(ratio)}× fewer than the paper"
    return f"at this scale: {sci(images_seen)} images seen, {sci(1 / ratio)}× more than the paper"


def summary_keys(images_seen: int | None) -> dict[str, Any]:
    """``images_seen_reference``, ``paper_images_seen`` and ``paper_images_seen_ratio`` (paper / ours)."""
    ratio = paper_ratio(images_seen)
    if ratio is None:
        return {}
    return {"images_seen_reference": int(images_seen), "paper_images_seen": int(PAPER_IMAGES_SEEN),
            "paper_images_seen_ratio": round(ratio, 3)}
