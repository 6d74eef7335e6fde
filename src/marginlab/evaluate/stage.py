"""Evaluate one trained run on every benchmark of the prepared data directory.

``run_evaluate(params, run)`` loads ``<runs_dir>/<run>/model.pt`` and evaluates every set of every
registered evaluation-set format (:mod:`marginlab.evalsets`) found in ``<data.prepared_dir>/``, in table
order:

- every ``verification/<name>.bin``: 10-fold accuracy (+ VAL@FAR=1e-3) of flip-fused, L2-normalised
  embeddings (:mod:`.verification`);
- every ``ijb/<name>/`` set in the IJB meta layout: template fusion ``evaluate.fusion`` and TAR at
  ``evaluate.fars`` (:mod:`.ijb_protocol`);
- ``tinyface/`` when present: closed-set rank-k (``evaluate.ranks``) of probes against gallery match +
  distractors (:mod:`.identification`).

This module owns the model and the embedding (one function handed to each format); the formats own
their files and metrics. Each format adds one section of ``metrics.json`` (its ``family``) and its
``summary`` entries.

The model is fed the way it was trained (input size of its ResolvedRun, channel order recorded in
``model.pt``). It writes, atomically, ``roc.parquet`` (columns ``protocol``, ``set``, ``fpr``, ``tpr``,
``threshold``; IJB sets and, with scores = −distance, verification sets), ``eval_norms.parquet``
(``split``, ``index``, ``norm`` of the flip-fused embedding, ``iq``/``brisque`` joined from
``<quality.output_dir>/scores.parquet`` and the synthetic ``gt_quality`` when those exist, NaN
otherwise), ``metrics.json`` with the stable schema below, and last ``eval_timing.json`` (wall time,
device and image count; :mod:`marginlab.core.timing`), kept apart so the metrics stay deterministic::

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

from marginlab.core.config import EvaluateConfig, Params, ResolvedRun
from marginlab.core.device import resolve_device
from marginlab.evalsets import EvalSet, EvalTools, SetResult, eval_sets
from marginlab.evaluate import identification, ijb_protocol, verification
from marginlab.evaluate.embed import embed_images
from marginlab.evaluate.ijb_protocol import far_key
from marginlab.core.io import write_json, write_parquet
from marginlab.core.layouts import PreparedLayout, QualityLayout, RunLayout
from marginlab.core.timing import StageTimer

log = logging.getLogger(__name__)

__all__ = ["EvaluationResult", "evaluate_prepared", "metrics_summary", "run_evaluate", "load_run_model", "join_quality", "read_quality_scores"]

ROC_COLUMNS = ["protocol", "set", "fpr", "tpr", "threshold"]
NORM_COLUMNS = ["split", "index", "norm", "iq", "brisque", "gt_quality"]


def _empty_sections() -> dict[str, dict[str, Any]]:
    return {fmt.family: {} for fmt in eval_sets()}


@dataclass
class EvaluationResult:
    """Everything measured on one prepared directory (before the run's identity is added).

    ``sections``: one metrics.json section per registered evaluation-set family, in table order.
    """

    sections: dict[str, dict[str, Any]] = field(default_factory=_empty_sections)
    roc: list[pd.DataFrame] = field(default_factory=list)
    norms: list[pd.DataFrame] = field(default_factory=list)

    @property
    def verification(self) -> dict[str, Any]:
        return self.sections["verification"]

    @property
    def ijb(self) -> dict[str, Any]:
        return self.sections["ijb"]

    @property
    def identification(self) -> dict[str, Any]:
        return self.sections["identification"]

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
    # deadlocks on its first cv2 call (see marginlab.train.input.datasets.build_loader).
    cv2.setNumThreads(0)
    yield from torch.utils.data.DataLoader(_Indexed(load, n), batch_size=size, shuffle=False, num_workers=workers, collate_fn=_as_list)


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
    layout = PreparedLayout(prepared_dir)
    prepared = layout.root
    if not prepared.is_dir():
        raise FileNotFoundError(f"prepared data directory {prepared} not found (params data.prepared_dir); run the prepare stage first")
    found = [(fmt, fmt.instances(layout)) for fmt in eval_sets()]
    if not any(names for _, names in found):
        raise FileNotFoundError(f"nothing to evaluate in {prepared}: expected {_expected()}")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    embed_kw = dict(input_size=input_size, channel_order=channel_order, batch_size=cfg.batch_size, flip=cfg.flip, device=dev, progress=progress,
                    channels_last=cfg.channels_last)
    if num_workers is None:
        num_workers = 0 if dev.type == "cpu" else max(0, min(8, (os.cpu_count() or 1) - 1))
    result = EvaluationResult()
    tools = EvalTools(embed=functools.partial(_embed, backbone, embed_kw, num_workers), cfg=cfg,
                      verification=verification, ijb=ijb_protocol, identification=identification)
    for fmt, names in found:
        for name in names:
            _add(result, fmt, name, fmt.evaluate(layout, name, tools))
    return result


def _embed(backbone: nn.Module, embed_kw: dict, workers: int, n: int, load: Callable[[int], np.ndarray], desc: str) -> np.ndarray:
    """The evaluation sets' embedding function (:data:`marginlab.evalsets.Embed`): flip-fused features of ``load(i)``."""
    return embed_images(backbone, _chunks(n, load, embed_kw["batch_size"], workers), total=n, desc=desc, **embed_kw)


def _add(result: EvaluationResult, fmt: EvalSet, name: str, measured: SetResult) -> None:
    result.sections[fmt.family][name] = measured.metrics
    if measured.roc is not None:
        result.roc.append(measured.roc)
    result.norms.extend(measured.norms)


def _expected() -> str:
    expects = [fmt.expects for fmt in eval_sets()]
    return ", ".join(expects[:-1]) + " or " + expects[-1] if len(expects) > 1 else expects[0]


def metrics_summary(result: EvaluationResult) -> dict[str, Optional[float]]:
    out: dict[str, Optional[float]] = {}
    for fmt in eval_sets():
        out.update(fmt.summary(result.sections.get(fmt.family, {})))
    return out


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
    run = RunLayout.of(params, run_name)
    run_dir = run.root
    dev = resolve_device(device or "auto")
    backbone, resolved, info = load_run_model(run_dir, device=dev, expected=expected)
    # The model file records the channel order it was trained with; that is what it must be fed.
    channel_order = info.get("channel_order", params.data.channel_order)
    if channel_order != params.data.channel_order:
        warnings.warn(
            f"{run.model} was trained on {channel_order} input but params data.channel_order is "
            f"{params.data.channel_order}; evaluating with the model's {channel_order}",
            stacklevel=2,
        )
    quality_scores = read_quality_scores(QualityLayout.of(params).scores)  # fail before the long part
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
        **result.sections,
        "summary": metrics_summary(result),
    }
    norms = join_quality(result.norms_frame(), quality_scores)
    write_parquet(run.roc, result.roc_frame())
    write_parquet(run.eval_norms, norms)
    write_json(run.metrics, metrics)  # after the tables: its presence marks a complete evaluation
    # the wall time, apart so metrics.json stays deterministic (no timing noise in `dvc metrics diff`)
    timer.write(run.eval_timing, device=str(dev), images=int(len(norms)), flip=bool(cfg.flip))
    return metrics
