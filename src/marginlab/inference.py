"""A trained model on face images outside the pipeline: embeddings with their feature norms, and one pair's
verification decision (``marginlab embed`` / ``marginlab verify``).

The images go through exactly what evaluation does (:func:`marginlab.evaluate.embed.embed_images`: the
model's input size and channel order, flip fusion), so a norm or a similarity here is the one the
report's protocols measured. They are aligned face crops, or (``align="detect"``) photos that go
through prepare's own detector, face policy and ArcFace warp (:mod:`marginlab.data.align`, the
``data.alignment`` defaults) first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marginlab.core.layouts import RunLayout

__all__ = ["add_model_arguments", "align_faces", "embed_files", "expand_images", "model_dir", "read_faces", "verify_pair"]


def add_model_arguments(parser: Any) -> None:
    """The options ``marginlab embed`` and ``marginlab verify`` share: which model, where, and alignment."""
    parser.add_argument("--model", required=True, help="a run name of params.yaml, or a model folder (a run's, or one marginlab import-model wrote)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--align",
        default="none",
        choices=("none", "detect"),
        help="detect: find the face in each photo and warp it to the ArcFace template first, as prepare does",
    )


def model_dir(model: str | Path, params_path: str | Path | None = None) -> Path:
    """The folder of ``model``: a folder holding ``model.pt`` as given, else the run of that name under the
    params file's ``runs_dir``."""
    from marginlab.core.config import load_params
    from marginlab.models import ModelFileError

    from marginlab.released.embedder import has_model

    given = Path(model)
    if has_model(given):
        return given
    params = load_params(params_path or "params.yaml", check_path_policy=False)
    if str(model) not in params.runs:
        raise ModelFileError(
            f"{model}: neither a folder holding model.pt nor a run of {params_path or 'params.yaml'} "
            f"(runs: {', '.join(params.runs)})"
        )
    run = RunLayout.of(params, str(model))
    if not run.model.is_file():
        raise ModelFileError(f"{run.model} not found (train the run first: python -m marginlab train {model})")
    return run.root


def expand_images(paths: Sequence[str | Path]) -> list[Path]:
    """The image files named: a file as given, a folder as its image files (``.jpg``, ``.jpeg``, ``.png``,
    ``.bmp``; subfolders included, hidden files skipped) in sorted order. A folder without images raises."""
    from marginlab.data.formats.folders import IMAGE_EXTENSIONS

    out: list[Path] = []
    for given in map(Path, paths):
        if not given.is_dir():
            out.append(given)
            continue
        found = sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                       and not any(part.startswith(".") for part in p.relative_to(given).parts))
        if not found:
            raise ValueError(f"{given}: folder holds no image ({', '.join(IMAGE_EXTENSIONS)})")
        out.extend(found)
    return out


def read_faces(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """RGB ``uint8`` arrays of the image files (any format OpenCV decodes; grayscale expanded, EXIF
    orientation applied as a viewer shows it)."""
    from marginlab.data.formats import decode_image

    if not paths:
        raise ValueError("no image given")
    return [decode_image(Path(p).read_bytes(), source=str(p), exif_orientation=True) for p in paths]


def align_faces(
    images: list[np.ndarray], *, size: int = 112, device: str = "cpu"
) -> tuple[list[np.ndarray | None], list[str]]:
    """Each photo's face warped to the ArcFace template at ``size`` (None where the policy keeps none), and
    its status (``ok``, ``no_face``, ``low_score``), as prepare aligns with the ``data.alignment`` defaults."""
    from marginlab.core.config import AlignmentConfig
    from marginlab.data.align import Detector, aligned_crop, choose_face

    cfg = AlignmentConfig()
    detector = Detector(
        device=device,
        min_face_size=cfg.min_face_size,
        min_face_fraction=cfg.min_face_fraction,
        thresholds=cfg.thresholds,
        max_side=cfg.max_side,
        batch_size=cfg.batch_size,
    )
    crops: list[np.ndarray | None] = []
    statuses = []
    for img, det in zip(images, detector.detect(images)):
        choice = choose_face(
            det, img.shape[:2], min_score=cfg.min_score, multiple_faces=cfg.multiple_faces, no_face="skip"
        )
        crops.append(aligned_crop(img, det.landmarks[choice.face], size) if choice.kept else None)
        statuses.append(choice.status)
    return crops, statuses


def _embed(run_dir: Path, faces: list[np.ndarray], device: str, batch_size: int) -> np.ndarray:
    from marginlab.evaluate.embed import embed_images
    from marginlab.released.embedder import load_embedder

    from marginlab.core.device import resolve_device

    model = load_embedder(run_dir, device=resolve_device(device))  # an ONNX model picks its provider by it
    return embed_images(
        model.module,
        [faces],
        input_size=model.input_size,
        channel_order=model.channel_order,
        batch_size=batch_size,
        device=device,
        progress=False,
    )


def embed_files(
    run_dir: Path, paths: Sequence[str | Path], *, device: str = "auto", batch_size: int = 64, align: str = "none"
) -> pd.DataFrame:
    """One row per image: ``path``, ``norm`` (of the flip-fused feature, before normalisation: the quality
    signal) and ``embedding`` (L2-normalised); with ``align="detect"`` also ``status``, and a photo in which
    no face is kept gets a null norm and embedding."""
    if align not in ("none", "detect"):
        raise ValueError(f"align must be 'none' or 'detect', got {align!r}")
    faces: list[np.ndarray | None] = list(read_faces(paths))
    statuses = None
    if align == "detect":
        faces, statuses = align_faces([f for f in faces if f is not None], device="cpu" if device == "auto" else device)
    kept = [i for i, f in enumerate(faces) if f is not None]
    norms = np.full(len(paths), np.nan, dtype=np.float32)
    embeddings: list[np.ndarray | None] = [None] * len(paths)
    if kept:
        feats = _embed(run_dir, [faces[i] for i in kept], device, batch_size)
        lengths = np.linalg.norm(feats, axis=1)
        for j, i in enumerate(kept):
            norms[i] = lengths[j]
            embeddings[i] = (feats[j] / max(float(lengths[j]), 1e-12)).astype(np.float32)
    frame = pd.DataFrame({"path": [str(p) for p in paths], "norm": norms, "embedding": embeddings})
    if statuses is not None:
        frame["status"] = statuses
    return frame


def verify_pair(
    run_dir: Path, first: str | Path, second: str | Path, *, device: str = "auto", align: str = "none"
) -> dict[str, Any]:
    """Cosine similarity of two faces and, per verification set the run was evaluated on, the decision at
    that set's 10-fold threshold (evaluation's rule: same person when the squared distance of the
    normalised embeddings, ``2 - 2 cos``, is below the mean of the folds' thresholds)."""
    frame = embed_files(run_dir, [first, second], device=device, batch_size=2, align=align)
    for row in frame.itertuples():
        if row.embedding is None:
            raise ValueError(
                f"{row.path}: no face kept by the detector ({row.status}); give an aligned crop "
                "without --align detect, or another photo"
            )
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
    return {
        "first": str(first),
        "second": str(second),
        "cosine": cosine,
        "distance": distance,
        "norms": [float(n) for n in frame["norm"]],
        "decision_at": decisions,
    }
