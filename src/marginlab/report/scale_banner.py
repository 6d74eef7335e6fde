"""How small this study is next to the paper, as the report states it everywhere.

:func:`images_seen`: the reference runs' training images seen (steps × global batch) against the paper's,
the "at this scale: …" qualifier of every verdict badge; :func:`scale_text`: our model, data and training
in one phrase; :func:`banner`: the scale banner above every section, for every data source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marginlab.analysis.images_seen import at_scale, paper_ratio, reference_images_seen, sci
from marginlab.analysis.paper_numbers import PAPER_EPOCHS, PAPER_IMAGES_SEEN
from marginlab.report.formatting import _finite
from marginlab.report.inputs import ReportInputs

__all__ = ["banner", "images_seen", "scale_text"]


def scale_text(inputs: ReportInputs) -> str:
    """Our scale in one phrase: model, width, input size, data, epochs and batch."""
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


def banner(inputs: ReportInputs, seen: Mapping[str, Any] | None = None) -> dict[str, str]:
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
    text = (f"Every number below comes from {scale_text(inputs)}: {amount} — not from an IR-100 trained on MS1MV2 for "
            f"{PAPER_EPOCHS} epochs as in the paper. Every verdict holds at this scale only: the report tests the pipeline and "
            "whether the direction of each claim reproduces; absolute accuracies are not comparable with the paper's.")
    return {"title": title, "text": text}
