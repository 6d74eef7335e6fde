"""Figures the report draws itself, and PNG embedding as data URIs.

- :func:`png_data_uri`: a PNG file (or bytes) as ``data:image/png;base64,...`` — the report embeds every
  figure this way, so the HTML is one self-contained file.
- :func:`quality_histograms`: BRISQUE and IQ histograms per split from the quality stage's
  ``summary.json`` (fixed bin edges, so the splits are comparable; counts outside the BRISQUE edges are
  stated in the legend).
- :func:`training_curves`: loss / accuracy / mean feature norm per epoch and run from the runs'
  ``live/plots/metrics/*.tsv`` — used only when the analysis stage did not draw ``training_curves.png``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marginlab.evalsets import eval_sets

__all__ = ["PNG_MAGIC", "figure_png", "png_data_uri", "quality_histograms", "read_live_history", "training_curves"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_data_uri(source: str | Path | bytes) -> str:
    """``data:image/png;base64,...`` of a PNG file or PNG bytes; ``ValueError`` if it is not a PNG."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if not data.startswith(PNG_MAGIC):
        where = "<bytes>" if isinstance(source, bytes) else str(source)
        raise ValueError(f"{where} is not a PNG file (the report embeds PNG figures only)")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _split_order(splits: Sequence[str]) -> list[str]:
    order = {"train": 0, **{fmt.split_prefix: i + 1 for i, fmt in enumerate(eval_sets())}}
    return sorted((s for s in splits if s != "all"), key=lambda s: (order.get(s.split(":")[0], 9), s))


def quality_histograms(summary: Mapping[str, Any], max_splits: int = 8) -> bytes | None:
    """PNG bytes of BRISQUE (left) and IQ (right) histograms per split (density), or None without data."""
    splits = summary.get("splits") or {}
    names = [s for s in _split_order(list(splits)) if (splits[s].get("scored") or 0) > 0][:max_splits]
    if not names:
        return None
    fig = _figure(11.0, 3.6)
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "brisque", "BRISQUE (lower = better)"), (axes[1], "iq", "IQ = 1 − clip(BRISQUE, 0, 100)/100")):
        for name in names:
            hist = (splits[name].get(key) or {}).get("histogram") or {}
            edges, counts = np.asarray(hist.get("edges", []), float), np.asarray(hist.get("counts", []), float)
            if len(edges) != len(counts) + 1 or counts.sum() <= 0:
                continue
            outside = int(hist.get("below", 0)) + int(hist.get("above", 0))
            density = counts / counts.sum() / np.diff(edges)
            tag = f"{name} (n={int(counts.sum())}" + (f", {outside} outside the axis" if outside else "") + ")"
            ax.stairs(density, edges, label=tag, lw=1.6)
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle("Quality scores of the prepared images, per split", fontsize=10)
    return figure_png(fig)


def read_live_history(live_dir: Path, metrics: Sequence[str]) -> pd.DataFrame:
    """``step`` + one column per metric found in ``live_dir/<metric>.tsv`` (dvclive / plain logger layout)."""
    frame: pd.DataFrame | None = None
    for metric in metrics:
        tsv = live_dir / f"{metric}.tsv"
        if not tsv.is_file():
            continue
        part = pd.read_csv(tsv, sep="\t")
        if "step" not in part.columns or part.shape[1] < 2:
            continue
        part = part[["step", part.columns[-1]]].rename(columns={part.columns[-1]: metric})
        frame = part if frame is None else frame.merge(part, on="step", how="outer")
    return frame.sort_values("step") if frame is not None else pd.DataFrame(columns=["step"])


def training_curves(histories: Mapping[str, pd.DataFrame]) -> bytes | None:
    """PNG bytes: train loss, train accuracy and mean feature norm per epoch, one line per run."""
    panels = (("train/loss", "training loss"), ("train/acc", "training accuracy"), ("train/norm_mean", "mean feature norm"))
    if not any(m in h.columns for h in histories.values() for m, _ in panels):
        return None
    fig = _figure(12.0, 3.4)
    axes = fig.subplots(1, 3)
    for ax, (metric, title) in zip(axes, panels):
        for run, hist in histories.items():
            if metric in hist.columns:
                ax.plot(hist["step"], hist[metric], marker="o", ms=3, lw=1.2, label=run)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    return figure_png(fig)
