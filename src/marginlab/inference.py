"""A trained model on face images outside the pipeline: embeddings with their feature norms, and one pair's
verification decision (``marginlab embed`` / ``marginlab verify``).

The images go through exactly what evaluation does (:func:`marginlab.evaluate.embed.embed_images`: the
model's input size and channel order, flip fusion), so a norm or a similarity here is the one the
report's protocols measured. The images must already be aligned face crops; detection and alignment
of raw photos is the prepare stage's (``data.align: detect``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marginlab.core.layouts import RunLayout

__all__ = ["embed_files", "model_dir", "read_faces", "verify_pair"]


def model_dir(model: str | Path, params_path: str | Path | None = None) -> Path:
    """The folder of ``model``: a folder holding ``model.pt`` as given, else the run of that name under the
    params file's ``runs_dir``."""
    from marginlab.core.config import load_params
    from marginlab.models import ModelFileError

    given = Path(model)
    if RunLayout(given).model.is_file():
        return given
    params = load_params(params_path or "params.yaml", check_path_policy=False)
    if str(model) not in params.runs:
        raise ModelFileError(f"{model}: neither a folder holding model.pt nor a run of {params_path or 'params.yaml'} "
                             f"(runs: {', '.join(params.runs)})")
    run = RunLayout.of(params, str(model))
    if not run.model.is_file():
        raise ModelFileError(f"{run.model} not found (train the run first: python -m marginlab train {model})")
    return run.root


def read_faces(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """RGB ``uint8`` arrays of the image files (any format OpenCV decodes; grayscale expanded, EXIF
    orientation applied as a viewer shows it)."""
    from marginlab.data.formats import decode_image

    if not paths:
        raise ValueError("no image given")
    return [decode_image(Path(p).read_bytes(), source=str(p), exif_orientation=True) for p in paths]


def _embed(run_dir: Path, faces: list[np.ndarray], device: str, batch_size: int) -> np.ndarray:
    from marginlab.evaluate.embed import embed_images
    from marginlab.models import load_model, model_info

    backbone, _, resolved = load_model(run_dir)
    channel_order = model_info(run_dir).get("channel_order", "BGR")
    return embed_images(backbone, [faces], input_size=resolved.model.input_size, channel_order=channel_order,
                        batch_size=batch_size, device=device, progress=False)


def embed_files(run_dir: Path, paths: Sequence[str | Path], *, device: str = "auto",
                batch_size: int = 64) -> pd.DataFrame:
    """One row per image: ``path``, ``norm`` (of the flip-fused feature, before normalisation: the quality
    signal) and ``embedding`` (L2-normalised)."""
    feats = _embed(run_dir, read_faces(paths), device, batch_size)
    norms = np.linalg.norm(feats, axis=1)
    unit = feats / np.maximum(norms, 1e-12)[:, None]
    return pd.DataFrame({"path": [str(p) for p in paths], "norm": norms.astype(np.float32),
                         "embedding": [row.astype(np.float32) for row in unit]})


def verify_pair(run_dir: Path, first: str | Path, second: str | Path, *, device: str = "auto") -> dict[str, Any]:
    """Cosine similarity of two faces and, per verification set the run was evaluated on, the decision at
    that set's 10-fold threshold (evaluation's rule: same person when the squared distance of the
    normalised embeddings, ``2 - 2 cos``, is below the mean of the folds' thresholds)."""
    frame = embed_files(run_dir, [first, second], device=device, batch_size=2)
    cosine = float(np.dot(frame["embedding"][0], frame["embedding"][1]))
    distance = 2.0 - 2.0 * cosine
    decisions: dict[str, Any] = {}
    metrics_path = RunLayout(run_dir).metrics
    if metrics_path.is_file():
        verification = json.loads(metrics_path.read_text()).get("verification") or {}
        for name, entry in verification.items():
            if isinstance(entry, dict) and isinstance(entry.get("threshold_mean"), (int, float)):
                threshold = float(entry["threshold_mean"])
                decisions[name] = {"threshold": threshold, "same": bool(distance < threshold)}
    return {"first": str(first), "second": str(second), "cosine": cosine, "distance": distance,
            "norms": [float(n) for n in frame["norm"]], "decision_at": decisions}
