"""The ``released`` stage: what a model trained elsewhere, at the paper's scale, says about the paper's claims.

For one entry of ``released:`` (:class:`marginlab.core.config.ReleasedModel`) it imports the file into a
temporary model folder (:func:`marginlab.released.importers.import_model`: read as data, keys and shapes
checked) and measures, on the prepared data:

- **the protocols** of the evaluate stage (verification, IJB, identification), with the same embedding and
  flip fusion (:func:`marginlab.evaluate.stage.evaluate_prepared`), and the evaluation images' feature
  norms joined with their IQ (``eval_norms.parquet``);
- **claim 1 at the model's scale**: Pearson and Spearman of feature norm vs IQ (and vs the synthetic
  ground-truth quality where the data has it) with percentile bootstrap intervals: on each evaluation
  split (image bootstrap: the sets carry no identities) and on a sample of the training set
  (``sample_size`` images drawn stratified by IQ, as the training probe draws; identity-cluster bootstrap).
  The paper's 0.52 was measured on its own training set: that is this sample when ``own_data`` is true, and
  an out-of-distribution set otherwise, which the report says;
- **claim 4, paired**: each sample image embedded clean and with the training augmentations (drawn from a
  fixed per-image seed, exactly as the training probe does), ``log(norm_augmented / norm_clean)`` per
  image, grouped by what was applied (:func:`marginlab.analysis.augmentation.norm_change`).

The training-sample norms are of one forward pass (no flip fusion), as the training probe measures them;
the evaluation norms are flip-fused, as evaluate measures them. A model whose output is already
L2-normalised has no informative norm: its correlation and augmentation parts are refused with that reason
and its protocols are still measured. Everything lands in ``released/<name>/`` atomically
(:class:`marginlab.core.layouts.ReleasedLayout`); the wall time apart, in ``timing.json``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from marginlab.core.config import ConfigError, Params, ReleasedModel
from marginlab.core.io import atomic_dir, sha256_file, write_json, write_parquet
from marginlab.core.layouts import RELEASED_DIR, PreparedLayout, QualityLayout, ReleasedLayout
from marginlab.core.timing import StageTimer

log = logging.getLogger(__name__)

__all__ = ["NORMALISED_REFUSAL", "correlation_rows", "measure_released", "released_source", "sample_frame"]

#: Why the norm parts are not measured on a model whose output is L2-normalised.
NORMALISED_REFUSAL = ("the model's output is already L2-normalised: its feature norm is 1 for every image and "
                      "carries no quality information, so the norm-quality and augmentation parts are not measured")
#: The quality targets a norm is correlated with, where the data has them.
TARGETS = ("iq", "gt_quality")


def released_source(entry: ReleasedModel, name: str, root: str | Path = ".") -> Path:
    """The entry's file, relative paths against the pipeline root; ``ConfigError`` naming the key if absent."""
    path = Path(entry.file).expanduser()
    path = path if path.is_absolute() else Path(root) / path
    if not path.is_file():
        raise ConfigError(f"released.{name}.file: {path} is not a file (the released model to probe; see the "
                          "README's 'Released models' for where to get the official checkpoints)")
    return path


def sample_frame(embedder: Any, params: Params, entry: ReleasedModel, *, device: Any,
                 batch_size: int) -> Optional[pd.DataFrame]:
    """Clean and augmented norms of a training-set sample (module docstring); None without ``train.rec``.

    Columns ``index``, ``class_label`` (the identity), ``pass`` (clean | augmented), ``norm``, ``iq``,
    ``gt_quality`` (of the stored image) and the augmentation flags (False on the clean pass)."""
    from marginlab.analysis.correlation import IDENTITY_COLUMN
    from marginlab.data.formats import open_recordio
    from marginlab.train.input.augment import AdaFaceAugment
    from marginlab.train.probe import FLAG_NAMES, ProbeSet, embed, load_gt_quality, select_probe
    from marginlab.train.proxy import load_iq_table

    prepared = PreparedLayout(params.data.prepared_dir)
    if not prepared.train_rec.is_file():
        return None
    reader = open_recordio(prepared.train_rec, skip_corrupt=params.data.skip_corrupt)
    n = len(reader)
    scores = QualityLayout.of(params).scores
    iq_table = load_iq_table(scores, n) if scores.is_file() else None
    gt_table = load_gt_quality(prepared.train_meta, n)
    quality = iq_table if iq_table is not None else gt_table
    indices = select_probe(np.arange(n), entry.sample_size, params.seed, quality)
    probe = ProbeSet.from_reader(reader, indices, input_size=embedder.input_size, channel_order=embedder.channel_order,
                                 augment=AdaFaceAugment(params.augment), seed=params.seed, iq_table=iq_table,
                                 gt_table=gt_table)
    frames = []
    for name, inputs in (("clean", probe.clean), ("augmented", probe.augmented)):
        feats = embed(embedder.module, inputs, batch_size=batch_size, device=device)
        frame = pd.DataFrame({"index": probe.indices, IDENTITY_COLUMN: probe.labels, "pass": name,
                              "norm": feats.norm(dim=1).numpy().astype(np.float64),
                              "iq": np.nan if probe.iq is None else probe.iq.astype(np.float64),
                              "gt_quality": np.nan if probe.gt_quality is None else probe.gt_quality.astype(np.float64)})
        for k, flag in enumerate(FLAG_NAMES):
            frame[flag] = probe.flags[:, k] if name == "augmented" else np.zeros(len(frame), dtype=bool)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def correlation_rows(eval_norms: pd.DataFrame, sample: Optional[pd.DataFrame], *, n_resamples: int,
                     confidence: float, seed: int) -> list[dict[str, Any]]:
    """One row per (set, target): ``set`` (``eval:<split>`` or ``train-sample``), ``target``, Pearson and
    Spearman with their intervals, ``n`` and ``bootstrap`` (identity on the sample, image on the eval sets)."""
    from marginlab.analysis.correlation import IDENTITY_COLUMN, correlation_with_ci

    groups: list[tuple[str, pd.DataFrame, Optional[np.ndarray]]] = [
        (f"eval:{split}", rows, None) for split, rows in eval_norms.groupby("split", sort=False)]
    if sample is not None:
        clean = sample[sample["pass"] == "clean"]
        groups.append(("train-sample", clean, clean[IDENTITY_COLUMN].to_numpy()))
    rows = []
    for set_name, frame, clusters in groups:
        for target in TARGETS:
            if target not in frame.columns or not np.isfinite(frame[target].to_numpy(np.float64)).any():
                continue
            result = correlation_with_ci(frame["norm"].to_numpy(np.float64), frame[target].to_numpy(np.float64),
                                         n_resamples=n_resamples, confidence=confidence, seed=seed, clusters=clusters)
            rows.append({"set": set_name, "target": target, **result.as_dict()})
    return rows


def _augmentation_rows(sample: Optional[pd.DataFrame], *, n_resamples: int, confidence: float,
                       seed: int) -> list[dict[str, Any]]:
    from marginlab.analysis.augmentation import norm_change

    if sample is None:
        return []
    clean, augmented = sample[sample["pass"] == "clean"], sample[sample["pass"] == "augmented"]
    table = norm_change(clean, augmented, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return table.to_dict(orient="records")


def measure_released(params: Params, name: str, *, root: str | Path = ".", device: Optional[str] = None,
                     progress: bool = True) -> dict[str, Any]:
    """Measure released model ``name`` (module docstring); write ``released/<name>/``; return its metrics."""
    from marginlab.core.device import resolve_device
    from marginlab.evaluate.ijb_protocol import far_key
    from marginlab.evaluate.stage import evaluate_prepared, join_quality, metrics_summary, read_quality_scores
    from marginlab.released.embedder import load_embedder
    from marginlab.released.importers import import_model

    if name not in params.released:
        known = ", ".join(params.released) or "none"
        raise ConfigError(f"released model {name!r} is not in params 'released' (entries: {known})")
    entry = params.released[name]
    src = released_source(entry, name, root)
    timer = StageTimer(f"released@{name}")
    dev = resolve_device(device or "auto")
    layout = ReleasedLayout.of(name, Path(root) / RELEASED_DIR)
    cfg, analysis = params.evaluate, params.analysis
    quality_scores = read_quality_scores(QualityLayout.of(params).scores)
    with tempfile.TemporaryDirectory(prefix=f"marginlab-released-{name}-") as tmp:
        model_dir = import_model(src, entry.format, Path(tmp) / "model", arch=entry.arch)
        embedder = load_embedder(model_dir, device=dev)
        result = evaluate_prepared(embedder.module, params.data.prepared_dir, cfg=cfg, input_size=embedder.input_size,
                                   channel_order=embedder.channel_order, device=dev, progress=progress)
        sample = sample_frame(embedder, params, entry, device=dev, batch_size=max(cfg.batch_size, 64))
    eval_norms = join_quality(result.norms_frame(), quality_scores)
    boot = dict(n_resamples=analysis.n_resamples, confidence=analysis.confidence, seed=params.seed)
    refused = embedder.normalised_output
    imported = dict(embedder.imported or {})
    metrics: dict[str, Any] = {
        "name": name,
        "model": {
            "file": str(entry.file),
            "sha256": imported.get("sha256") or sha256_file(src),
            "format": entry.format,
            "arch": imported.get("arch", entry.arch),
            "trained_on": entry.trained_on,
            "images_seen": entry.images_seen,
            "own_data": entry.own_data,
            "embedding_size": embedder.embedding_size,
            "input_size": embedder.input_size,
            "channel_order": embedder.channel_order,
            "normalised_output": refused,
        },
        "protocol": {"flip": cfg.flip, "fusion": cfg.fusion, "fars": [far_key(f) for f in cfg.fars],
                     "ranks": list(cfg.ranks), "sample_size": 0 if sample is None else int((sample["pass"] == "clean").sum()),
                     "n_resamples": analysis.n_resamples, "confidence": analysis.confidence},
        **result.sections,
        "summary": metrics_summary(result),
        "correlation": {"refused": NORMALISED_REFUSAL} if refused else correlation_rows(eval_norms, sample, **boot),
        "augmentation": {"refused": NORMALISED_REFUSAL} if refused else _augmentation_rows(sample, **boot),
    }
    with atomic_dir(layout.root) as out:
        staged = ReleasedLayout(out)
        write_parquet(staged.roc, result.roc_frame())
        write_parquet(staged.eval_norms, eval_norms)
        if sample is not None:
            write_parquet(staged.sample_norms, sample)
        write_json(staged.metrics, metrics)
        timer.write(staged.timing, device=str(dev), images=int(len(eval_norms)) + (0 if sample is None else len(sample)))
    log.info("released@%s: wrote %s", name, layout.root)
    return metrics
