"""The quality stage: score every prepared image, write ``scores.parquet`` and ``summary.json``.

Steps: load the model and verify its identity (the converted LIVE model, or the file digest
``quality.model_sha256`` names; :func:`.brisque_model.verify_model_identity`), open the splits of
``data.prepared_dir`` (:mod:`.sources`), score them with :class:`.BrisqueScorer` chunk by chunk into
``<output_dir>/.parts/`` (:mod:`.score_dataset`; images whose longer side exceeds ``quality.max_side``
are downscaled to it on loading; resumable, fingerprinted by model sha256, chunk size, max_side,
device type, library versions and the input files' sizes and mtimes), stream the parts into
``scores.parquet``, summarise (:mod:`.summary`, with the synthetic ground truth when present) into
``summary.json`` (its ``settings`` name the model, ``max_side`` and how many images were downscaled
or too small), then delete the parts. The wall time goes to ``timing.json`` (:mod:`marginlab.core.timing`),
not into the deterministic summary.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from marginlab.core.config import Params
from marginlab.core.io import write_json
from marginlab.core.layouts import QualityLayout
from marginlab.core.timing import StageTimer

log = logging.getLogger(__name__)

#: Bump when the scoring procedure changes, so stale part files are not reused.
SCORER_VERSION = 1


class QualityStageError(RuntimeError):
    """The quality stage cannot run or an input is bad; the message names the file/split/index."""


def run_quality(params: Params, *, progress: bool = True, threads: int = 0) -> dict[str, Any]:
    """Run the stage for ``params``; returns the summary dict (also written to ``summary.json``).

    ``threads``: torch intra-op threads for CPU scoring (0 = PyTorch's default, one per core). On a
    machine shared with other jobs, 1 is far more robust: with 2 threads on 2 busy cores the
    benchmark fell from ~190 to ~10 images/s, single-threaded it stayed at ~190 (bench_quality.py).
    """
    import pyiqa
    import torch

    from marginlab.data.formats import DataFormatError
    from marginlab.core.device import resolve_device
    from marginlab.quality.brisque_model import BrisqueModelError
    from marginlab.quality.score_dataset import ImageReadError, ScoreStreamError, remove_parts, score_items
    from marginlab.quality.scorer import CPU_FORWARD_BATCH, BrisqueScorer
    from marginlab.quality.sources import (
        PreparedDataError,
        iter_items,
        load_ground_truth,
        prepared_sources,
        sources_fingerprint,
    )
    from marginlab.quality.summary import summarize_scores

    cfg = params.quality
    if threads < 0:
        raise QualityStageError(f"threads must be >= 0 (0 = PyTorch default), got {threads}")
    if threads:
        torch.set_num_threads(threads)
    timer = StageTimer("quality")
    out = QualityLayout.of(params)
    parts_dir = out.parts_dir
    prepared = Path(params.data.prepared_dir)
    try:
        device = resolve_device(cfg.device)
        # quality.batch_size stacks same-size images per scorer call; on CPU they are evaluated in
        # forward passes of at most CPU_FORWARD_BATCH (faster there, and scores do not depend on it).
        forward = cfg.batch_size if device.type != "cpu" else min(cfg.batch_size, CPU_FORWARD_BATCH)
        scorer = BrisqueScorer(cfg.model_path, device=device, batch_size=forward, model_sha256=cfg.model_sha256)
        sources = prepared_sources(prepared)
        total = sum(s.length for s in sources)
        fingerprint = {
            "scorer_version": SCORER_VERSION,
            "model_sha256": scorer.info.get("model_sha256"),
            "chunk_size": cfg.chunk_size,
            "max_side": cfg.max_side,
            "device_type": device.type,
            "torch": torch.__version__,
            "pyiqa": getattr(pyiqa, "__version__", "unknown"),
            "inputs": sources_fingerprint(sources),
        }
        log.info("scoring %d images of %d splits from %s on %s", total, len(sources), prepared, device)
        start = time.perf_counter()
        result = score_items(iter_items(sources), scorer, parts_dir, chunk_size=cfg.chunk_size,
                             batch_size=cfg.batch_size, total=total, fingerprint=fingerprint, progress=progress,
                             max_side=cfg.max_side)
        elapsed = time.perf_counter() - start
        result.write(out.scores)
        scores = pd.read_parquet(out.scores)
        summary = summarize_scores(scores, load_ground_truth(prepared, sources))
    except (BrisqueModelError, PreparedDataError, ImageReadError, ScoreStreamError, DataFormatError) as err:
        raise QualityStageError(str(err)) from err
    # Only deterministic facts go into summary.json (it is a DVC output); timings go to timing.json.
    summary["settings"] = {
        "device_type": device.type,
        "model": {k: scorer.info[k] for k in ("model_sha256", "gamma", "rho")},  # from the .pth, not its sidecar
        "too_small": result.too_small,
        "max_side": cfg.max_side,
        "downscaled": result.downscaled,
    }
    write_json(out.summary, summary)
    remove_parts(parts_dir)
    timer.write(out.timing, device=str(device), images=int(result.num_images),
                scoring_s=round(elapsed, 3), computed_chunks=result.computed_chunks, reused_chunks=result.reused_chunks)
    rate = result.num_images / elapsed if elapsed > 0 else float("nan")
    log.info("scored %d images in %.1f s (%.1f images/s; %d chunks computed, %d reused)", result.num_images, elapsed,
             rate, result.computed_chunks, result.reused_chunks)
    return summary


__all__ = ["SCORER_VERSION", "QualityStageError", "run_quality"]
