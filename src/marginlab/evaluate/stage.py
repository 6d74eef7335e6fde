"""Evaluate one trained run on every benchmark of the prepared data directory.

``run_evaluate(params, run)`` loads ``<runs_dir>/<run>/model.pt`` and evaluates, in
``<data.prepared_dir>/``:

- every ``verification/<name>.bin``: 10-fold accuracy (+ VAL@FAR=1e-3) of flip-fused, L2-normalised
  embeddings (:mod:`.verification`);
- every ``ijb/<name>/`` set in the IJB meta layout: template fusion ``evaluate.fusion`` and TAR at
  ``evaluate.fars`` (:mod:`.ijb`);
- ``tinyface/`` when present: closed-set rank-k (``evaluate.ranks``) of probes against gallery match +
  distractors (:mod:`.identification`).

The model is fed the way it was trained (input size of its ResolvedRun, channel order recorded in
``model.pt``). It writes, atomically, ``roc.parquet`` (columns ``protocol``, ``set``, ``fpr``, ``tpr``,
``threshold``; IJB sets and, with scores = −distance, verification sets), ``eval_norms.parquet``
(``split``, ``index``, ``norm`` of the flip-fused embedding, ``iq``/``brisque`` joined from
``<quality.output_dir>/scores.parquet`` and the synthetic ``gt_quality`` when those exist, NaN
otherwise), ``metrics.json`` with the stable schema below, and last ``eval_timing.json`` (wall time,
device and image count; :mod:`marginlab.timing`), kept apart so the metrics stay deterministic::

    {"run", "head", "label", "tags", "epoch", "selection",
     "protocol": {"flip", "fusion", "channel_order", "input_size", "fars", "ranks"},
     "verification": {set: {accuracy_mean, accuracy_std, threshold_mean, pairs, fold_accuracies,
                            fold_thresholds, val_at_far}},
     "ijb": {set: {fusion, tar_at_far: {"1e-04": tar, ...}, supported_fars, templates, pairs,
                   genuine, impostor}},
     "identification": {set: {rank1, rank5, probes, probes_without_match, gallery, distractors}},
     "summary": {hq_accuracy, lq_accuracy, verification_mean_accuracy, "ijb_tar_at_1e-04",
                 tinyface_rank1, tinyface_rank5}}

Summary entries are ``null`` when the set behind them does not exist.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

from marginlab.config import EvaluateConfig, Params, ResolvedRun
from marginlab.device import resolve_device
from marginlab.evaluate.embed import embed_images
from marginlab.evaluate.identification import identification_rates
from marginlab.evaluate.ijb_protocol import evaluate_templates, far_key, roc_points
from marginlab.evaluate.verification import pair_distances, ten_fold_accuracy
from marginlab.io import write_json, write_parquet
from marginlab.timing import EVAL_TIMING_FILE, StageTimer

log = logging.getLogger(__name__)

__all__ = ["EvaluationResult", "evaluate_prepared", "run_evaluate", "load_run_model", "join_quality", "read_quality_scores"]

ROC_COLUMNS = ["protocol", "set", "fpr", "tpr", "threshold"]
NORM_COLUMNS = ["split", "index", "norm", "iq", "brisque", "gt_quality"]


@dataclass
class EvaluationResult:
    """Everything measured on one prepared directory (before the run's identity is added)."""

    verification: dict[str, Any] = field(default_factory=dict)
    ijb: dict[str, Any] = field(default_factory=dict)
    identification: dict[str, Any] = field(default_factory=dict)
    roc: list[pd.DataFrame] = field(default_factory=list)
    norms: list[pd.DataFrame] = field(default_factory=list)

    def roc_frame(self) -> pd.DataFrame:
        if not self.roc:
            return pd.DataFrame({c: pd.Series(dtype="float64" if c not in ("protocol", "set") else "object") for c in ROC_COLUMNS})
        return pd.concat(self.roc, ignore_index=True)[ROC_COLUMNS]

    def norms_frame(self) -> pd.DataFrame:
        if not self.norms:
            return pd.DataFrame({"split": pd.Series(dtype="object"), "index": pd.Series(dtype="int64"), "norm": pd.Series(dtype="float64"), "gt_quality": pd.Series(dtype="float64")})
        return pd.concat(self.norms, ignore_index=True)


# --------------------------------------------------------------------------- model
def load_run_model(run_dir: str | Path, device: str | torch.device = "cpu",
                   expected: ResolvedRun | None = None) -> tuple[nn.Module, ResolvedRun, dict[str, Any]]:
    """``(backbone, resolved_run, info)`` of a trained run's ``model.pt``.

    ``info`` holds the file's non-weight entries (``channel_order``, ``input_size``, ``epoch``,
    ``selection``, ...; :func:`marginlab.models.model_info`). With ``expected`` (the run's configuration in
    params) a file trained with another configuration is refused (:func:`marginlab.models.load_model`).
    """
    from marginlab.models import load_model, model_info

    run_dir = Path(run_dir)
    backbone, _head, resolved = load_model(run_dir, device=device, expected=expected)
    return backbone, resolved, model_info(run_dir)


# --------------------------------------------------------------------------- helpers
def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class _Indexed(torch.utils.data.Dataset):
    """Items ``load(0) .. load(n-1)`` as a Dataset, so DataLoader workers can decode in parallel."""

    def __init__(self, load: Callable[[int], np.ndarray], n: int):
        self.load, self.n = load, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        return self.load(i)


def _as_list(batch: list) -> list:
    return batch


def _chunks(n: int, load: Callable[[int], np.ndarray], size: int, workers: int = 0) -> Iterator[list[np.ndarray]]:
    """Images ``load(i)`` in order, in lists of ``size``; decoded by ``workers`` processes when > 0."""
    if workers <= 0:
        for start in range(0, n, size):
            yield [load(i) for i in range(start, min(n, start + size))]
        return
    # OpenCV must be single-threaded before forking: a worker that inherits OpenCV's thread pool
    # deadlocks on its first cv2 call (see marginlab.data.datasets.build_loader).
    cv2.setNumThreads(0)
    yield from torch.utils.data.DataLoader(_Indexed(load, n), batch_size=size, shuffle=False, num_workers=workers, collate_fn=_as_list)


def _decode_encoded(encoded: list, source: str, i: int) -> np.ndarray:
    from marginlab.data.formats import decode_image

    return decode_image(bytes(encoded[i]), source=f"{source}[{i}]")


def _decode_file(paths: list, i: int) -> np.ndarray:
    from marginlab.data.formats import decode_image

    return decode_image(Path(paths[i]).read_bytes(), source=str(paths[i]))


def _gt_quality(meta_path: Path, n: int) -> np.ndarray:
    """Per-position ``gt_quality`` of a synthetic set's meta parquet (NaN when absent)."""
    out = np.full(n, np.nan)
    if not meta_path.exists():
        return out
    meta = pd.read_parquet(meta_path)
    if "gt_quality" not in meta.columns:
        return out
    if "index" in meta.columns:
        idx = meta["index"].to_numpy()
        ok = (idx >= 0) & (idx < n)
        out[idx[ok]] = meta["gt_quality"].to_numpy()[ok]
    elif len(meta) == n:
        out[:] = meta["gt_quality"].to_numpy()
    else:
        raise ValueError(f"{meta_path}: {len(meta)} rows without an 'index' column, expected one row per image ({n})")
    return out


def _norm_rows(split: str, feats: np.ndarray, gt: Optional[np.ndarray] = None) -> pd.DataFrame:
    n = feats.shape[0]
    return pd.DataFrame({
        "split": split,
        "index": np.arange(n, dtype=np.int64),
        "norm": np.linalg.norm(feats.astype(np.float64), axis=1),
        "gt_quality": gt if gt is not None else np.full(n, np.nan),
    })


def read_quality_scores(scores_path: str | Path) -> Optional[pd.DataFrame]:
    """``split, index, iq, brisque`` of the quality stage's ``scores.parquet``; ``None`` if it does not exist."""
    scores_path = Path(scores_path)
    if not scores_path.exists():
        return None
    scores = pd.read_parquet(scores_path)
    need = {"split", "index", "iq", "brisque"}
    if not need <= set(scores.columns):
        raise ValueError(f"{scores_path} lacks column(s) {sorted(need - set(scores.columns))}; expected split, index, brisque, iq")
    return scores[["split", "index", "iq", "brisque"]].drop_duplicates(["split", "index"])


def join_quality(norms: pd.DataFrame, scores: Optional[pd.DataFrame]) -> pd.DataFrame:
    """Left-join ``iq`` and ``brisque`` (from :func:`read_quality_scores`) on (split, index); NaN where absent."""
    out = norms.copy()
    if scores is not None:
        out = out.merge(scores, on=["split", "index"], how="left")
    else:
        out["iq"] = np.nan
        out["brisque"] = np.nan
    out["iq"] = out["iq"].astype("float64")
    out["brisque"] = out["brisque"].astype("float64")
    return out[NORM_COLUMNS]


# --------------------------------------------------------------------------- protocols
def _evaluate_bins(backbone, prepared: Path, embed_kw: dict, workers: int, result: EvaluationResult) -> None:
    from marginlab.data.formats import read_bin_encoded

    for path in sorted((prepared / "verification").glob("*.bin")):
        name = path.stem
        encoded, issame = read_bin_encoded(path)
        issame = np.asarray(issame, dtype=bool)
        if len(encoded) != 2 * issame.shape[0]:
            raise ValueError(f"{path}: {len(encoded)} images for {issame.shape[0]} pairs (expected 2 images per pair)")
        load = functools.partial(_decode_encoded, encoded, str(path))
        feats = embed_images(backbone, _chunks(len(encoded), load, embed_kw["batch_size"], workers), total=len(encoded), desc=f"bin:{name}", **embed_kw)
        normed = _l2(feats)
        metrics = ten_fold_accuracy(normed[0::2], normed[1::2], issame)
        result.verification[name] = metrics
        dist = pair_distances(normed[0::2], normed[1::2])
        roc = roc_points(-dist, issame)
        roc.insert(0, "set", name)
        roc.insert(0, "protocol", "verification")
        result.roc.append(roc)
        result.norms.append(_norm_rows(f"bin:{name}", feats, _gt_quality(prepared / "verification" / f"{name}_meta.parquet", len(encoded))))
        log.info(f"verification {name}: accuracy {metrics['accuracy_mean']:.4f} ± {metrics['accuracy_std']:.4f} ({metrics['pairs']} pairs)")


def _evaluate_ijb(backbone, prepared: Path, embed_kw: dict, workers: int, cfg: EvaluateConfig, result: EvaluationResult) -> None:
    root = prepared / "ijb"
    if not root.is_dir():
        return
    from marginlab.data.formats import read_ijb

    for set_dir in sorted(p for p in root.iterdir() if p.is_dir() and (p / "meta").is_dir()):
        name = set_dir.name
        ijb = read_ijb(set_dir, name)
        n = len(ijb.faces)
        feats = embed_images(backbone, _chunks(n, ijb.load_aligned, embed_kw["batch_size"], workers), total=n, desc=f"ijb:{name}", **embed_kw)
        metrics, roc = evaluate_templates(feats, ijb.faces, ijb.pairs, fusion=cfg.fusion, fars=cfg.fars)
        result.ijb[name] = metrics
        roc.insert(0, "set", name)
        roc.insert(0, "protocol", "ijb")
        result.roc.append(roc)
        result.norms.append(_norm_rows(f"ijb:{name}", feats, _gt_quality(set_dir / "meta.parquet", n)))
        shown = ", ".join(f"{k}: {v:.4f}" for k, v in metrics["tar_at_far"].items())
        log.info(f"ijb {name} ({cfg.fusion} fusion): TAR@FAR {shown}")


def _tinyface_gt(meta_path: Path, part: str, n: int) -> Optional[np.ndarray]:
    if not meta_path.exists():
        return None
    meta = pd.read_parquet(meta_path)
    part_col = next((c for c in ("part", "split") if c in meta.columns), None)
    if part_col is None or "index" not in meta.columns or "gt_quality" not in meta.columns:
        return None
    sub = meta[meta[part_col].astype(str).isin([part, f"tinyface:{part}"])]
    out = np.full(n, np.nan)
    idx = sub["index"].to_numpy()
    ok = (idx >= 0) & (idx < n)
    out[idx[ok]] = sub["gt_quality"].to_numpy()[ok]
    return out


def _evaluate_tinyface(backbone, prepared: Path, embed_kw: dict, workers: int, cfg: EvaluateConfig, result: EvaluationResult) -> None:
    root = prepared / "tinyface"
    if not root.is_dir():
        return
    from marginlab.data.formats import IDENTIFICATION_PARTS, read_identification_set

    parts = read_identification_set(root)  # checks the layout and the closed-set condition
    feats: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for part in IDENTIFICATION_PARTS:
        if part not in parts or len(parts[part][0]) == 0:
            continue
        paths, part_labels = parts[part]
        load = functools.partial(_decode_file, list(paths))
        f = embed_images(backbone, _chunks(len(paths), load, embed_kw["batch_size"], workers), total=len(paths), desc=f"tinyface:{part}", **embed_kw)
        feats[part], labels[part] = f, np.asarray(part_labels)
        result.norms.append(_norm_rows(f"tinyface:{part}", f, _tinyface_gt(root / "meta.parquet", part, len(paths))))
    gallery_parts = [p for p in ("Gallery_Match", "Gallery_Distractor") if p in feats]
    metrics = identification_rates(
        _l2(feats["Probe"]),
        labels["Probe"],
        _l2(np.concatenate([feats[p] for p in gallery_parts])),
        np.concatenate([labels[p] for p in gallery_parts]),
        ranks=cfg.ranks,
    )
    result.identification["tinyface"] = metrics
    shown = ", ".join(f"rank-{k}: {metrics[f'rank{k}']:.4f}" for k in cfg.ranks)
    log.info(f"tinyface: {shown} ({metrics['probes']} probes, gallery {metrics['gallery']} incl. {metrics['distractors']} distractors)")


def evaluate_prepared(
    backbone: nn.Module,
    prepared_dir: str | Path,
    *,
    cfg: EvaluateConfig,
    input_size: int,
    channel_order: str = "BGR",
    device: str | torch.device = "auto",
    num_workers: Optional[int] = None,
    progress: bool = True,
) -> EvaluationResult:
    """Run every protocol whose data exists in ``prepared_dir`` (module docstring).

    ``num_workers`` image-decoding processes (``None``: 0 on CPU, where the model needs the cores,
    ``min(8, cpus - 1)`` on CUDA, where decoding and alignment would otherwise starve the GPU).
    """
    prepared = Path(prepared_dir)
    if not prepared.is_dir():
        raise FileNotFoundError(f"prepared data directory {prepared} not found (params data.prepared_dir); run the prepare stage first")
    has_bins = any((prepared / "verification").glob("*.bin"))
    has_ijb = (prepared / "ijb").is_dir() and any((p / "meta").is_dir() for p in (prepared / "ijb").iterdir())
    has_tiny = (prepared / "tinyface").is_dir()
    if not (has_bins or has_ijb or has_tiny):
        raise FileNotFoundError(f"nothing to evaluate in {prepared}: expected verification/*.bin, ijb/<name>/meta/ or tinyface/")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    embed_kw = dict(input_size=input_size, channel_order=channel_order, batch_size=cfg.batch_size, flip=cfg.flip, device=dev, progress=progress,
                    channels_last=cfg.channels_last)
    if num_workers is None:
        num_workers = 0 if dev.type == "cpu" else max(0, min(8, (os.cpu_count() or 1) - 1))
    result = EvaluationResult()
    _evaluate_bins(backbone, prepared, embed_kw, num_workers, result)
    _evaluate_ijb(backbone, prepared, embed_kw, num_workers, cfg, result)
    _evaluate_tinyface(backbone, prepared, embed_kw, num_workers, cfg, result)
    return result


def _summary(result: EvaluationResult) -> dict[str, Optional[float]]:
    ver = result.verification
    accs = [v["accuracy_mean"] for v in ver.values()]
    key = far_key(1e-4)
    tars = [v["tar_at_far"][key] for v in result.ijb.values() if key in v["tar_at_far"]]
    tiny = result.identification.get("tinyface", {})
    return {
        "hq_accuracy": ver["hq"]["accuracy_mean"] if "hq" in ver else None,
        "lq_accuracy": ver["lq"]["accuracy_mean"] if "lq" in ver else None,
        "verification_mean_accuracy": float(np.mean(accs)) if accs else None,
        f"ijb_tar_at_{key}": float(np.mean(tars)) if tars else None,
        "tinyface_rank1": tiny.get("rank1"),
        "tinyface_rank5": tiny.get("rank5"),
    }


def run_evaluate(
    params: Params,
    run_name: str,
    *,
    device: Optional[str] = None,
    num_workers: Optional[int] = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``<runs_dir>/<run_name>/model.pt``; write metrics.json, roc.parquet, eval_norms.parquet.

    ``device``: 'auto' (default: CUDA when present), 'cpu' or 'cuda'; ``num_workers``: image-decoding
    processes (:func:`evaluate_prepared`). ``model.pt`` must have been trained with the run's configuration
    in params (:func:`marginlab.models.check_trained_config`: a stale or foreign file is refused rather than
    reported under this run's name); label and tags come from the ResolvedRun stored in it. Returns the
    metrics dict.
    """
    expected = params.run(run_name)  # raises ConfigError naming the known runs
    timer = StageTimer(f"evaluate@{run_name}")
    run_dir = Path(params.runs_dir) / run_name
    dev = resolve_device(device or "auto")
    backbone, resolved, info = load_run_model(run_dir, device=dev, expected=expected)
    # The model file records the channel order it was trained with; that is what it must be fed.
    channel_order = info.get("channel_order", params.data.channel_order)
    if channel_order != params.data.channel_order:
        warnings.warn(
            f"{run_dir / 'model.pt'} was trained on {channel_order} input but params data.channel_order is "
            f"{params.data.channel_order}; evaluating with the model's {channel_order}",
            stacklevel=2,
        )
    quality_scores = read_quality_scores(Path(params.quality.output_dir) / "scores.parquet")  # fail before the long part
    cfg = params.evaluate
    result = evaluate_prepared(
        backbone,
        params.data.prepared_dir,
        cfg=cfg,
        input_size=resolved.model.input_size,
        channel_order=channel_order,
        device=dev,
        num_workers=num_workers,
        progress=progress,
    )
    metrics = {
        "run": run_name,
        "head": resolved.head,
        "label": resolved.label,
        "tags": list(resolved.tags),
        "epoch": info.get("epoch"),
        "selection": info.get("selection"),
        "protocol": {
            "flip": cfg.flip,
            "fusion": cfg.fusion,
            "channel_order": channel_order,
            "input_size": resolved.model.input_size,
            "fars": [far_key(f) for f in cfg.fars],
            "ranks": list(cfg.ranks),
        },
        "verification": result.verification,
        "ijb": result.ijb,
        "identification": result.identification,
        "summary": _summary(result),
    }
    norms = join_quality(result.norms_frame(), quality_scores)
    write_parquet(run_dir / "roc.parquet", result.roc_frame())
    write_parquet(run_dir / "eval_norms.parquet", norms)
    write_json(run_dir / "metrics.json", metrics)  # after the tables: its presence marks a complete evaluation
    # the wall time, apart so metrics.json stays deterministic (no timing noise in `dvc metrics diff`)
    timer.write(run_dir / EVAL_TIMING_FILE, device=str(dev), images=int(len(norms)), flip=bool(cfg.flip))
    return metrics
