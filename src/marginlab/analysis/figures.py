"""Figures of the analysis stage (matplotlib, Agg backend; seaborn styling and palette).

- :func:`fig2_panels`: Fig. 2 — hexbin density of a probe quantity (feature norm or P_yi) against a
  quality target (IQ or ground truth), clean probe pass, one row per compared configuration (its
  lowest seed), one column per selected epoch (:func:`panel_epochs`: first, early, middle, last);
  each panel's title gives Pearson r and Spearman ρ.
- :func:`correlation_vs_progress`: r and ρ against training progress (the fraction of the run's optimiser
  steps, :mod:`.progress`) with the bootstrap 95 % band, one line per run, with the paper's final-epoch
  correlation (:data:`.paper_numbers.FIG2_NORM_IQ_CORRELATION`) as a reference line on the norm panels and
  the end of each run's epoch 1 (claim 1b) and the paper's epoch 1 as a share of its run
  (:data:`.paper_numbers.PAPER_EARLY_PROGRESS`) marked.
- :func:`zhat_by_progress`: AdaFace's ẑ of the clean probe against training progress (median and 5–95 %
  band per run, :mod:`.zhat`), with ArcFace (−1), CosFace (0) and +1 marked.
- :func:`augmentation_bars`: share of each augmentation per norm bin (last epoch).
- :func:`training_curves`: the per-epoch dvclive metrics of every run.

Every function writes one PNG and returns its path; empty inputs give a figure that says "no data"
rather than an error, so the stage still produces its declared outputs. Fig. 3: :mod:`.gst_figures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from marginlab.analysis.paper_numbers import FIG2_NORM_IQ_CORRELATION, PAPER_EARLY_PROGRESS

__all__ = [
    "augmentation_bars", "correlation_vs_progress", "fig2_panels", "panel_epochs", "representative_runs", "training_curves",
    "zhat_by_progress",
]

QUANTITY_NAMES = {"norm": "feature norm ‖z‖", "p_yi": "P_yi (plain softmax)"}
TARGET_NAMES = {"iq": "IQ = 1 − BRISQUE/100", "gt_quality": "ground-truth quality"}
DPI = 130


def _style() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _no_data(path: Path, title: str, why: str) -> Path:
    _style()
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.6, title, ha="center", va="center", fontsize=12, weight="bold")
    ax.text(0.5, 0.35, f"no data: {why}", ha="center", va="center", fontsize=10)
    return _save(fig, path)


def panel_epochs(epochs: Sequence[int]) -> list[int]:
    """Up to four epochs to show: the first trained epoch (1, else the first), an early one (≈ 1/4 of
    training), the middle one and the last (duplicates removed, ascending)."""
    ep = sorted({int(e) for e in epochs})
    if not ep:
        return []
    last = ep[-1]
    first = 1 if 1 in ep else ep[0]

    def nearest(target: float) -> int:
        rounded = int(np.floor(target + 0.5))
        return min(ep, key=lambda e: (abs(e - rounded), e))

    return sorted({first, nearest(max(first, last / 4)), nearest(max(first, last / 2)), last})


def representative_runs(runs: pd.DataFrame, labels: Sequence[str], available: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(run, label, head)`` of the lowest-seed run with data of each label, in ``labels`` order."""
    out = []
    have = set(available)
    for label in labels:
        sub = runs[(runs["label"] == label) & runs["run"].isin(have)].sort_values("seed")
        if len(sub):
            out.append((sub["run"].iloc[0], label, sub["head"].iloc[0]))
    return out


def fig2_panels(
    probe: pd.DataFrame,
    reps: Sequence[tuple[str, str, str]],
    path: Path,
    *,
    quantity: str = "norm",
    target: str = "iq",
    epochs: Sequence[int] | None = None,
) -> Path:
    """Hexbin panels of ``quantity`` (y) against ``target`` (x) per representative run × epoch."""
    title = (f"Fig. 2 — {QUANTITY_NAMES.get(quantity, quantity)} vs {TARGET_NAMES.get(target, target)}\n"
             "(clean probe; hexbin, colour = log count)")
    if probe.empty or target not in probe.columns or not reps:
        return _no_data(path, title, "no probe tables" if probe.empty or not reps else f"no '{target}' column")
    clean = probe[(probe["pass"] == "clean") & np.isfinite(probe[target].astype(float))]
    clean = clean[clean["run"].isin([r for r, _, _ in reps])]
    if clean.empty:
        return _no_data(path, title, f"'{target}' is unknown for every probe image")
    show = list(epochs) if epochs is not None else panel_epochs(clean["epoch"].unique())
    _style()
    nrow, ncol = len(reps), len(show)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.1 * ncol + 0.6, 2.6 * nrow + 0.6), squeeze=False,
                             sharex=True, sharey=(quantity == "p_yi"))
    for i, (run, label, _head) in enumerate(reps):
        for k, epoch in enumerate(show):
            ax = axes[i, k]
            sel = clean[(clean["run"] == run) & (clean["epoch"] == epoch)]
            x, y = sel[target].to_numpy(float), sel[quantity].to_numpy(float)
            if len(x) >= 3:
                ax.hexbin(x, y, gridsize=28, cmap="viridis", mincnt=1, bins="log", linewidths=0)
                from scipy import stats

                ok = np.ptp(x) > 0 and np.ptp(y) > 0
                r = stats.pearsonr(x, y).statistic if ok else np.nan
                rho = stats.spearmanr(x, y).statistic if ok else np.nan
                ax.set_title(f"{label} · epoch {epoch}\nr = {r:.3f}, ρ = {rho:.3f} (n = {len(x)})", fontsize=8.5)
            else:
                ax.set_title(f"{label} · epoch {epoch}\n(no data)", fontsize=8.5)
            if i == nrow - 1:
                ax.set_xlabel(TARGET_NAMES.get(target, target))
            if k == 0:
                ax.set_ylabel(QUANTITY_NAMES.get(quantity, quantity))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


#: Ticks of the training-progress axis (fractions of the optimiser steps).
PROGRESS_TICKS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _progress_axis(ax: plt.Axes) -> None:
    """Fraction of training on a symmetric-log axis (linear below 1 %), so 0 and the first percent both show."""
    ax.set_xscale("symlog", linthresh=0.01, linscale=0.5)
    ax.set_xlim(0.0, 1.05)
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(PROGRESS_TICKS))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:.0%}"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def correlation_vs_progress(axis_rows: pd.DataFrame, runs: pd.DataFrame, labels: Sequence[str], path: Path,
                            *, target: str = "iq") -> Path:
    """2 × 2 panels (norm / P_yi × Pearson / Spearman) of the clean-probe correlation with ``target``
    against training progress; ``axis_rows``: :func:`.progress.training_progress_rows`."""
    title = f"Correlation with {TARGET_NAMES.get(target, target)} across training (clean probe, 95% bootstrap CI)"
    rows = axis_rows[(axis_rows["pass"] == "clean") & (axis_rows["target"] == target)
                     & axis_rows["label"].isin(list(labels))] if not axis_rows.empty else axis_rows
    if rows.empty:
        return _no_data(path, title, f"no clean-probe correlations with '{target}'")
    _style()
    palette = dict(zip(labels, sns.color_palette("tab10", n_colors=max(len(labels), 3))))
    seeds = runs.set_index("run")["seed"].to_dict()
    dashes = ["-", "--", ":", "-."]
    # claim 1b's point: the end of each run's epoch 1 (1 / its epochs), where its epochs are known
    last_epoch = rows.groupby("run")["epoch"].max()
    epoch_one = sorted({round(1.0 / e, 6) for e in last_epoch if e and e > 0})
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.2), sharex=True)
    for i, quantity in enumerate(("norm", "p_yi")):
        for k, coef in enumerate(("pearson", "spearman")):
            ax = axes[i, k]
            q = rows[rows["quantity"] == quantity]
            for label in labels:
                lab_runs = sorted(q[q["label"] == label]["run"].unique(), key=lambda r: seeds.get(r, 0))
                for j, run in enumerate(lab_runs):
                    d = q[q["run"] == run].sort_values("progress")
                    ax.plot(d["progress"], d[coef], dashes[j % len(dashes)], color=palette[label], marker="o", ms=3,
                            label=label if j == 0 else None, lw=1.4)
                    ax.fill_between(d["progress"], d[f"{coef}_lo"], d[f"{coef}_hi"], color=palette[label], alpha=0.12, lw=0)
            _progress_axis(ax)
            ax.axvline(PAPER_EARLY_PROGRESS, color="black", lw=0.8, ls=":")
            for x in epoch_one:
                ax.axvline(x, color="firebrick", lw=0.9, ls="-.")
            if quantity == "norm" and target == "iq":
                ax.axhline(FIG2_NORM_IQ_CORRELATION, color="black", lw=1, ls="--")
                ax.text(ax.get_xlim()[0], FIG2_NORM_IQ_CORRELATION, f" paper {FIG2_NORM_IQ_CORRELATION} (final epoch)", va="bottom", fontsize=8)
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_title(f"{QUANTITY_NAMES[quantity]} — {coef.capitalize()}", fontsize=10)
            ax.set_ylabel("Pearson r" if coef == "pearson" else "Spearman ρ")
            if i == 1:
                ax.set_xlabel("training progress: share of the run's optimiser steps (symlog)")
    handles, names = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=min(len(names), 6), frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{title}\nline style = seed; dash-dot red: end of epoch 1 (claim 1b); dotted: the paper's epoch 1 of 26 "
                 f"as a share of its run ({PAPER_EARLY_PROGRESS:.1%})", fontsize=11)
    fig.tight_layout(rect=(0, 0.035 * (1 + (len(names) - 1) // 6) if handles else 0, 1, 1))
    return _save(fig, path)


def zhat_by_progress(table: pd.DataFrame, runs: pd.DataFrame, labels: Sequence[str], path: Path) -> Path:
    """ẑ of the clean probe against training progress: median line and 5–95 % band per run, colour = label.

    ``table``: :func:`.zhat.zhat_table`; a run with progress probes is drawn from them, else from its epoch
    ends (as :func:`correlation_vs_progress`). Horizontal lines at ẑ = −1 (ArcFace), 0 (CosFace) and +1.
    """
    title = "Did AdaFace's margin adapt? ẑ of the clean probe images across training (median, 5–95 % band)"
    rows = table[table["pass"] == "clean"] if len(table) else table
    if rows.empty:
        return _no_data(path, title, "no run recorded ẑ (z_hat) in its probe tables")
    with_progress = set(rows.loc[rows["schedule"] == "progress", "run"])
    rows = rows[(rows["schedule"] == "progress") | ~rows["run"].isin(with_progress)]
    shown = [lab for lab in labels if (rows["label"] == lab).any()] + sorted(set(rows["label"]) - set(labels))
    _style()
    palette = dict(zip(shown, sns.color_palette("tab10", n_colors=max(len(shown), 3))))
    seeds = runs.set_index("run")["seed"].to_dict() if len(runs) else {}
    dashes = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(9, 4.6))
    for label in shown:
        lab_runs = sorted(rows.loc[rows["label"] == label, "run"].unique(), key=lambda r: (seeds.get(r, 0), r))
        for j, run in enumerate(lab_runs):
            d = rows[rows["run"] == run].sort_values("progress")
            ax.plot(d["progress"], d["q50"], dashes[j % len(dashes)], color=palette[label], marker="o", ms=3, lw=1.4,
                    label=label if j == 0 else None)
            ax.fill_between(d["progress"], d["q05"], d["q95"], color=palette[label], alpha=0.15, lw=0)
    _progress_axis(ax)
    ax.set_ylim(-1.08, 1.08)
    for level, words in ((-1.0, "ẑ = −1: ArcFace"), (0.0, "ẑ = 0: CosFace"), (1.0, "ẑ = +1: negative angular margin")):
        ax.axhline(level, color="black", lw=0.8, ls="--" if level else "-")
        ax.text(1.04, level, words, ha="right", va="bottom" if level < 1 else "top", fontsize=7.5)
    ax.set_xlabel("training progress: share of the run's optimiser steps (symlog)")
    ax.set_ylabel("ẑ (AdaFace's normalised norm)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(title + "\nline style = seed", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def augmentation_bars(augmentation: pd.DataFrame, reps: Sequence[tuple[str, str, str]], path: Path) -> Path:
    """Grouped bars: share of crop / low-res / photometric / any per norm bin, one panel per representative run."""
    title = "Augmented share by feature-norm bin (augmented probe pass, last epoch; bin 1 = lowest norms)"
    data = augmentation[augmentation["run"].isin([r for r, _, _ in reps])] if not augmentation.empty else augmentation
    if data.empty:
        return _no_data(path, title, "no augmented probe rows")
    _style()
    shown = [rep for rep in reps if rep[0] in set(data["run"])]
    ncol = min(3, len(shown))
    nrow = int(np.ceil(len(shown) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.3 * ncol, 3.2 * nrow + 0.5), squeeze=False, sharey=True)
    kinds = [("share_crop", "crop"), ("share_lowres", "low-res"), ("share_photometric", "photometric"), ("share_any", "any of the 3")]
    colors = sns.color_palette("Set2", n_colors=len(kinds))
    for idx, (run, label, _head) in enumerate(shown):
        ax = axes[idx // ncol, idx % ncol]
        d = data[data["run"] == run].sort_values("norm_bin")
        x = np.arange(len(d))
        width = 0.8 / len(kinds)
        for j, (col, name) in enumerate(kinds):
            ax.bar(x + (j - (len(kinds) - 1) / 2) * width, d[col], width, color=colors[j], label=name)
        ax.set_xticks(x, [f"{int(b)}\n{lo:.1f}–{hi:.1f}" for b, lo, hi in zip(d["norm_bin"], d["norm_min"], d["norm_max"])], fontsize=7.5)
        ax.set_title(f"{label} (epoch {int(d['epoch'].iloc[0])}, n = {int(d['n'].sum())})", fontsize=9.5)
        ax.set_xlabel("norm bin (norm range)")
        if idx % ncol == 0:
            ax.set_ylabel("share of images")
    for idx in range(len(shown), nrow * ncol):
        axes[idx // ncol, idx % ncol].axis("off")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(kinds), frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.4 / (3.2 * nrow + 0.5), 1, 1))
    return _save(fig, path)


TRAINING_METRICS = (("train/loss", "training loss"), ("train/acc", "training accuracy (plain cosine)"),
                    ("train/norm_mean", "mean feature norm"), ("val/acc", "validation accuracy"), ("train/lr", "learning rate"))


def training_curves(live: pd.DataFrame, runs: pd.DataFrame, path: Path) -> Path:
    """One panel per logged training metric (loss, accuracy, mean norm, val accuracy, lr), one line per run."""
    title = "Training curves (per epoch)"
    if live.empty:
        return _no_data(path, title, "no dvclive metrics under runs/*/live")
    metrics = [(m, name) for m, name in TRAINING_METRICS if (live["metric"] == m).any()]
    if not metrics:
        return _no_data(path, title, "none of " + ", ".join(m for m, _ in TRAINING_METRICS) + " was logged")
    _style()
    labels = list(dict.fromkeys(runs["label"]))
    palette = dict(zip(labels, sns.color_palette("tab20", n_colors=max(len(labels), 3))))
    seeds = runs.set_index("run")["seed"].to_dict()
    n_labels = len(set(live["label"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.6 + 0.25 * (1 + (n_labels - 1) // 6)), squeeze=False)
    dashes = ["-", "--", ":", "-."]
    for k, (metric, name) in enumerate(metrics):
        ax = axes[0, k]
        d = live[live["metric"] == metric]
        seen_labels = set()
        for run, g in d.groupby("run", sort=True):
            g = g.sort_values("step")
            label = g["label"].iloc[0]
            ax.plot(g["step"], g["value"], dashes[int(seeds.get(run, 0)) % len(dashes)], color=palette.get(label),
                    marker="o", ms=2.5, lw=1.2, label=label if label not in seen_labels else None)
            seen_labels.add(label)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if metric == "train/lr":
            ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
    handles, names = [], []
    for ax in axes[0]:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    rows = 1 + (len(names) - 1) // 6 if names else 0
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 6), frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title + " — colour = configuration, line style = seed", fontsize=11)
    fig.tight_layout(rect=(0, 0.07 * rows, 1, 1))
    return _save(fig, path)
