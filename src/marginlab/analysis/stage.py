"""The analysis stage: ``run_analyze(params, out_dir="analysis")``.

Reads every run of ``params.runs`` from ``<runs_dir>/<run>/`` (probe tables, metrics.json,
eval_norms.parquet, live/, train_summary.json; :mod:`.collect`) and ``<quality.output_dir>/summary.json``,
and writes, each file atomically, into ``out_dir``:

``correlation.csv`` — one row per run, epoch, pass, quantity and target::

    run, label, head, epoch, pass, quantity, target,
    pearson, pearson_lo, pearson_hi, spearman, spearman_lo, spearman_hi, n, bootstrap

  ``pass``: ``clean`` / ``augmented`` (probe passes, every epoch; 0 = before training) or
  ``eval:<split>`` (evaluation images of ``eval_norms.parquet``, e.g. ``eval:bin:lq``, at the evaluated
  epoch; quantity ``norm`` only). ``quantity``: ``norm`` | ``p_yi``; ``target``: ``iq`` (1 − BRISQUE/100)
  | ``gt_quality`` (synthetic data only). ``*_lo``/``*_hi``: percentile bootstrap 95 % interval
  (``n_resamples`` resamples, seeded by ``params.seed``; :mod:`.correlation`) that resamples identities
  (``bootstrap`` = ``identity``: ~10 probe images per identity, whose shared effects an image bootstrap
  would ignore) or, without identities (evaluation images), images (``image``). Groups with fewer than 3
  finite pairs are left out.

``correlation_progress.csv`` — the same for the probes at fractions of training (``probe/progress/``,
``train.probe_progress``), clean pass only, one row per run, step, quantity and target::

    run, label, head, step, images_seen, progress, epoch, pass, quantity, target, pearson, ..., n

  ``progress`` = step / the run's optimiser steps, ``images_seen`` = step × global batch, ``epoch`` = the
  epoch the step belongs to (0 = before training). Claim 1b and the correlation figure use it
  (:mod:`.progress`); runs without progress probes fall back to their epoch rows.

``augmentation.csv`` — per run, last epoch, augmented probe pass, per norm bin (1 = lowest)::

    run, label, head, epoch, norm_bin, norm_min, norm_max,
    share_crop, share_lowres, share_photometric, share_any, n

``ablation.csv`` (Table 1) — ``factor, setting, label, is_reference, set, mean, std, n_seeds``;
``comparison.csv`` (main table) — ``label, head, protocol, quality, mean, std, n_seeds,
delta_vs_adaface, ci_lo, ci_hi, p_value, test, n_pairs, paper_value, paper_setting``. Values, deltas
and intervals are in percent; protocols ``verification/<set>``, ``ijb/<set> TAR@FAR=<far>``,
``identification/<set> rank<k>`` (:mod:`.tables`).

``claims.json`` — ``{"reference": label, "reference_runs": [...], "missing": {run: [absent outputs]},
"decision_protocols": [...], "n_resamples", "confidence", "claims": [{id, title, statement, paper,
verdict, rule, numbers, parts: [{name, verdict, rule, numbers}], note?}, ...]}`` for every claim registered in
:mod:`.claims` (1–5), in its order, each computed from one :class:`.claims.ClaimEvidence`;
``verdict`` ∈ supported | not supported | inconclusive (:mod:`.verdict_rules` states every rule).

``summary.json`` (DVC metrics; numbers only, a key is absent when its data is): ``runs``,
``runs_with_metrics``, ``runs_with_probe``, ``adaface_final_{pearson,spearman}_norm_iq``,
``adaface_final_spearman_norm_gt_quality``, ``adaface_final_spearman_pyi_iq``,
``adaface_early_spearman_norm_iq`` and ``adaface_early_progress`` (claim 1b's early point, :mod:`.progress`)
(means over the reference AdaFace seeds, clean probe),
``adaface_minus_best_baseline_<protocol-slug>`` for every decision protocol (percentage points; e.g.
``..._verification_lq``; descriptive: the best baseline by sample mean, no verdict uses it),
``adaface_minus_best_baseline_{low,high}_quality`` (their means over the low- / high-quality decision
protocols), ``adaface_minus_comparator_<protocol-slug>`` and ``adaface_minus_comparator_{low,high}_quality``
(claim 5's pre-specified comparator, ``analysis.comparator``; absent with ``dunnett``), ``augmented_share_low_norm``
/ ``augmented_share_high_norm`` (reference runs, lowest / highest norm bin), ``claims_supported``,
``claims_not_supported``, ``claims_inconclusive``, ``quality_spearman_iq_gt`` (from the quality summary).

``figures/`` — every figure registered in :mod:`.figure_specs`, in its order: ``fig2_norm_vs_iq.png``,
``fig2_pyi_vs_iq.png``, ``correlation_vs_progress.png`` and, when ground truth exists, ``fig2_norm_vs_gt_quality.png``,
``fig2_pyi_vs_gt_quality.png``, ``correlation_vs_progress_gt_quality.png``; ``augmentation_by_norm.png``,
``scale_vs_images_seen.png``, ``zhat_by_progress.png``, ``training_curves.png`` (drawn by :mod:`.figures` and
:mod:`.scale_figure`). The directory is replaced as a whole; ``figures=False`` (``--no-figures``) leaves it alone.

``scale.csv`` — the scale study (:mod:`.scale`), one row per run with a train summary and clean-probe
correlations: data size (``identities``, ``train_images``), training length (``epochs``, ``steps``,
``images_seen`` = steps × batch) and the last epoch's Spearman(norm, ``iq`` / ``gt_quality``) with its
interval (the ``correlation.csv`` rows). ``scale_fit.json`` — ``method``, ``headline`` (the one sentence),
``fits`` (Spearman = a + b·log10(images_seen) per head and target, per data size when possible, and with
data size as a second factor; slope intervals and statements, and with a paper value the slope needed to reach
it at the paper's images seen and whether the slope's interval includes it), ``training_length_pairs`` (runs
that differ only in epochs and share their probe images: the Spearman difference per pair with a paired
identity bootstrap, and a t over the pairs; :func:`.training_length.training_length_pairs`) and ``skipped`` runs with
their reasons.

``zhat.csv`` — AdaFace's ẑ over the probe images per run, probe point and pass (n, mean, std, quantiles 5/25/50/
75/95 %, shares clipped at −1 / +1; :mod:`.zhat`); probe tables without ``z_hat`` give no rows. ``summary.json``
also gets ``adaface_final_zhat_{q05,q50,q95}`` (reference runs, last epoch, clean pass) and the scale against the
paper (:mod:`.images_seen`): ``images_seen_reference`` (steps × global batch of the reference runs),
``paper_images_seen`` and ``paper_images_seen_ratio`` (paper / ours: how many times fewer images);
``figures/zhat_by_progress.png`` (:func:`.figures.zhat_by_progress`).

``timing.json`` — the stage's wall time (:mod:`marginlab.core.timing`), written last and kept out of the
deterministic outputs above.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marginlab.analysis import augmentation as aug
from marginlab.analysis import figures as fg
from marginlab.analysis import scale as sc
from marginlab.analysis import scale_fit as sf
from marginlab.analysis import training_length as tl
from marginlab.analysis import zhat as zh
from marginlab.analysis.images_seen import reference_images_seen, summary_keys
from marginlab.analysis.claims import ClaimEvidence, claim_by_id, evaluate_claims
from marginlab.analysis.claims.claim_evidence import build_evidence
from marginlab.analysis.collect import Collection, collect
from marginlab.analysis.figure_specs import FigureInputs, draw_figures
from marginlab.analysis.correlation import (
    CORRELATION_COLUMNS,
    PROGRESS_CORRELATION_COLUMNS,
    correlation_table,
    eval_correlation_table,
    progress_correlation_table,
)
from marginlab.analysis.progress import early_rows, training_progress_rows
from marginlab.analysis.tables import (
    ablation_table,
    aggregate,
    comparison_table,
    decision_protocols,
    main_labels,
    reference_label,
)
from marginlab.core.config import Params
from marginlab.core.io import atomic_dir, atomic_path, write_json
from marginlab.core.timing import TIMING_FILE, StageTimer

log = logging.getLogger(__name__)

__all__ = ["OUTPUT_FILES", "run_analyze"]

OUTPUT_FILES = (
    "correlation.csv", "correlation_progress.csv", "augmentation.csv", "ablation.csv", "comparison.csv", "claims.json",
    "summary.json", TIMING_FILE,
    "scale.csv", "scale_fit.json",
    "zhat.csv",
)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def _slug(protocol: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", protocol).strip("_").lower()


def _reference_runs(col: Collection, reference: str | None) -> list[str]:
    if reference is None:
        return []
    return list(col.runs[col.runs["label"] == reference].sort_values("seed")["run"])


def _finite_mean(values) -> float | None:
    v = np.asarray(list(values), dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _summary(ev: ClaimEvidence, claims: list[dict]) -> dict[str, Any]:
    col, reference, ref_runs, corr = ev.collection, ev.reference, list(ev.reference_runs), ev.correlation
    gaps, claim5 = ev.augmentation_gaps, claim_by_id(claims, "5")  # claim 5's own comparisons feed the summary
    out: dict[str, Any] = {
        "runs": len(col.runs),
        "runs_with_metrics": int(col.metrics["run"].nunique()) if len(col.metrics) else 0,
        "runs_with_probe": int(col.probe["run"].nunique()) if len(col.probe) else 0,
    }
    clean = corr[(corr["pass"] == "clean") & corr["run"].isin(ref_runs)]
    if len(clean):
        last = clean.groupby("run")["epoch"].transform("max") == clean["epoch"]
        for quantity, target, coef, key in (("norm", "iq", "pearson", "adaface_final_pearson_norm_iq"),
                                            ("norm", "iq", "spearman", "adaface_final_spearman_norm_iq"),
                                            ("norm", "gt_quality", "spearman", "adaface_final_spearman_norm_gt_quality"),
                                            ("p_yi", "iq", "spearman", "adaface_final_spearman_pyi_iq")):
            out[key] = _finite_mean(clean[last & (clean["quantity"] == quantity) & (clean["target"] == target)][coef])
        early = early_rows(corr, ev.progress_correlation, ref_runs)
        early = early[(early["pass"] == "clean") & (early["quantity"] == "norm") & (early["target"] == "iq")]
        out["adaface_early_spearman_norm_iq"] = _finite_mean(early["spearman"])
        out["adaface_early_progress"] = _finite_mean(early["progress"])
    # Descriptive (no verdict rests on it): AdaFace minus the best baseline by sample mean per decision protocol.
    best = _minus_best_baseline(ev.compared_aggregate, reference)
    for quality in ("low", "high"):
        values = [d for (_, q), d in best.items() if q == quality]
        if values:
            out[f"adaface_minus_best_baseline_{quality}_quality"] = float(np.mean(values))
    for (protocol, _), d in best.items():
        out[f"adaface_minus_best_baseline_{_slug(protocol)}"] = d
    # Claim 5's own comparisons: AdaFace minus the pre-specified comparator (analysis.comparator).
    for key in ("mean_gain_low_quality", "mean_gain_high_quality"):
        value = (claim5.get("numbers") or {}).get(key)
        if value is not None and (claim5.get("numbers") or {}).get("comparator") != "dunnett":
            out[f"adaface_minus_comparator_{key[len('mean_gain_'):]}"] = value
    if (claim5.get("numbers") or {}).get("comparator") != "dunnett":
        for part in claim5.get("parts") or []:
            for comp in part.get("numbers", {}).get("comparisons", []) or []:
                out[f"adaface_minus_comparator_{_slug(comp['protocol'])}"] = comp["delta"]
    if gaps:
        out["augmented_share_low_norm"] = _finite_mean(g["share_low"] for g in gaps.values())
        out["augmented_share_high_norm"] = _finite_mean(g["share_high"] for g in gaps.values())
    verdicts = [c["verdict"] for c in claims]
    out["claims_supported"] = verdicts.count("supported")
    out["claims_not_supported"] = verdicts.count("not supported")
    out["claims_inconclusive"] = verdicts.count("inconclusive")
    q = ((col.quality_summary or {}).get("splits", {}).get("all", {}) or {}).get("ground_truth", {}) or {}
    if q.get("spearman_iq_gt") is not None:
        out["quality_spearman_iq_gt"] = float(q["spearman_iq_gt"])
    return {k: (round(float(v), 6) if isinstance(v, float) else v) for k, v in out.items()
            if v is not None and not (isinstance(v, float) and not np.isfinite(v))}


def _zhat_summary(zhat: pd.DataFrame, ref_runs: list[str]) -> dict[str, float]:
    """``adaface_final_zhat_{q05,q50,q95}``: the reference runs' last-epoch clean-probe ẑ quantiles (mean over seeds)."""
    ranges = zh.final_ranges(zhat[zhat["run"].isin(ref_runs)]) if len(zhat) else zh.final_ranges(zhat)
    if ranges.empty:
        return {}
    return {f"adaface_final_zhat_{q}": round(float(ranges[q].iloc[0]), 6) for q in ("q05", "q50", "q95")}


def _minus_best_baseline(agg: pd.DataFrame, reference: str | None) -> dict[tuple[str, str], float]:
    """``{(protocol, quality): mean(reference) - max baseline mean}`` over the decision protocols (descriptive)."""
    if reference is None or agg.empty:
        return {}
    ref = agg[agg["label"] == reference].set_index("protocol")
    out = {}
    for protocol in decision_protocols(list(ref.index)):
        others = agg[(agg["protocol"] == protocol) & (agg["label"] != reference)]["mean"]
        others = others[np.isfinite(others)]
        if len(others) and np.isfinite(ref.loc[protocol, "mean"]):
            out[(protocol, str(ref.loc[protocol, "quality"]))] = float(ref.loc[protocol, "mean"] - others.max())
    return out


def run_analyze(
    params: Params,
    out_dir: str | Path = "analysis",
    *,
    n_resamples: int = 2000,
    norm_bins: int = 5,
    confidence: float = 0.95,
    figures: bool = True,
    progress: bool = True,
    workers: int = 0,
) -> dict[str, Any]:
    """Run every analysis on the outputs of ``params``' runs and write ``out_dir`` (module docstring).

    ``workers``: threads for the bootstrap intervals (0 = one per core; the results do not depend on it).
    Returns the ``summary.json`` dict. Runs whose outputs are missing are left out with a warning (their
    names are in ``claims.json`` under ``missing``); malformed outputs raise
    :class:`marginlab.analysis.collect.AnalysisInputError` naming the file.
    """
    if n_resamples < 1000:
        raise ValueError(f"n_resamples must be >= 1000 for stable 95% percentile intervals, got {n_resamples}")
    timer = StageTimer("analyze")
    out_dir = Path(out_dir)
    col = collect(params, progress=progress)
    reference = reference_label(col.runs)
    ref_runs = _reference_runs(col, reference)
    seed = params.seed

    corr = correlation_table(col.probe, n_resamples=n_resamples, confidence=confidence, seed=seed, progress=progress,
                             workers=workers) \
        if len(col.probe) else pd.DataFrame(columns=CORRELATION_COLUMNS)
    clean_progress = col.progress_probe[col.progress_probe["pass"] == "clean"]  # the figure and claim 1b use it
    progress_corr = progress_correlation_table(clean_progress, n_resamples=n_resamples, confidence=confidence, seed=seed,
                                               progress=progress, workers=workers) \
        if len(clean_progress) else pd.DataFrame(columns=PROGRESS_CORRELATION_COLUMNS)
    if len(col.eval_norms):
        corr = pd.concat([corr, eval_correlation_table(col.eval_norms, n_resamples=n_resamples, confidence=confidence,
                                                       seed=seed, workers=workers)], ignore_index=True)
    augmentation = aug.augmentation_table(col.probe, bins=norm_bins) if len(col.probe) else pd.DataFrame(columns=aug.AUGMENTATION_COLUMNS)
    agg = aggregate(col.metrics)
    comparison = comparison_table(col.metrics, col.runs, reference)
    ablation = ablation_table(col.metrics, col.runs, reference)

    compared = [lab for lab in main_labels(col.runs) if lab != reference]
    evidence = build_evidence(params, col, reference=reference, reference_runs=ref_runs, compared=compared,
                              correlation=corr, progress_correlation=progress_corr, aggregate=agg, ablation=ablation,
                              n_resamples=n_resamples, norm_bins=norm_bins, confidence=confidence)
    claims = evaluate_claims(evidence)
    summary = _summary(evidence, claims)
    scale, scale_skipped = sc.scale_table(corr, col.runs, col.train_summaries)
    scale_fits = sc.fit_trends(scale, confidence)
    scale_pairs = tl.training_length_pairs(col.probe, scale, col.runs, n_resamples=n_resamples, confidence=confidence,
                                           seed=seed)
    # ẑ per probe point (did AdaFace's margin adapt?) and the images seen against the paper's (the "at this scale" ratio)
    zhat = zh.zhat_table(col.probe, col.progress_probe, col.train_summaries)
    summary.update(_zhat_summary(zhat, ref_runs))
    summary.update(summary_keys(reference_images_seen(col.train_summaries, ref_runs)))

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(out_dir / "correlation.csv", corr[CORRELATION_COLUMNS])
    _write_csv(out_dir / "correlation_progress.csv", progress_corr[PROGRESS_CORRELATION_COLUMNS])
    _write_csv(out_dir / "augmentation.csv", augmentation)
    _write_csv(out_dir / "ablation.csv", ablation)
    _write_csv(out_dir / "comparison.csv", comparison)
    _write_csv(out_dir / "scale.csv", scale)
    _write_csv(out_dir / "zhat.csv", zhat)
    write_json(out_dir / "scale_fit.json", sf.scale_summary(scale_fits, scale_skipped, confidence, pairs=scale_pairs))
    write_json(out_dir / "claims.json", {
        "reference": reference, "reference_runs": ref_runs, "missing": col.missing,
        "decision_protocols": decision_protocols(list(agg["protocol"])) if len(agg) else [],
        "n_resamples": n_resamples, "confidence": confidence, "claims": claims,
    })
    if figures:
        _figures(col, training_progress_rows(corr, progress_corr), augmentation, reference, out_dir / "figures",
                 scale=(scale, scale_fits, scale_skipped), zhat=zhat)
    write_json(out_dir / "summary.json", summary)
    timer.write(out_dir / TIMING_FILE, runs=len(col.runs), correlation_rows=len(corr), figures=bool(figures))
    log.info("analysis written to %s in %.1f s (%d correlation rows, verdicts: %s)", out_dir, timer.elapsed_s,
             len(corr), ", ".join(f"{c['id']}: {c['verdict']}" for c in claims))
    return summary


def _figures(col: Collection, axis_rows: pd.DataFrame, augmentation: pd.DataFrame, reference: str | None, fig_dir: Path,
             *, scale: tuple[pd.DataFrame, list[dict], dict[str, str]], zhat: pd.DataFrame) -> None:
    """Every registered analysis figure (:mod:`.figure_specs`) into ``fig_dir``, replaced as a whole."""
    labels = main_labels(col.runs)
    if reference is not None and reference not in labels:
        labels = [reference, *labels]
    with_probe = list(col.probe["run"].unique()) if len(col.probe) else []
    has_gt = len(col.probe) > 0 and "gt_quality" in col.probe and np.isfinite(col.probe["gt_quality"].astype(float)).any()
    inputs = FigureInputs(collection=col, labels=labels, representatives=fg.representative_runs(col.runs, labels, with_probe),
                          has_ground_truth=bool(has_gt), progress_rows=axis_rows, augmentation=augmentation,
                          scale=scale[0], scale_fits=scale[1], scale_skipped=scale[2], zhat=zhat)
    with atomic_dir(fig_dir) as tmp:
        draw_figures(inputs, tmp)
