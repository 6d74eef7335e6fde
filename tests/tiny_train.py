"""The tiny training set and params shared by the training tests (test_train, test_distributed).

8 identities × 12 colour-coded 32×32 faces in a RecordIO, with a synthetic-style ground-truth quality
table; a 1/8-width IR-18 at 32×32 input on the CPU.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marginlab.core.config import Params
from marginlab.data.formats import encode_jpeg, write_recordio

N_CLASSES, PER_CLASS, SIZE = 8, 12, 32
N_IMAGES = N_CLASSES * PER_CLASS


def _faces() -> list[tuple[bytes, int]]:
    """Identity c = a distinct colour and a bar at a class-specific row; mild noise; JPEG."""
    rng = np.random.default_rng(0)
    palette = rng.integers(30, 226, size=(N_CLASSES, 3))
    out = []
    for c in range(N_CLASSES):
        for _ in range(PER_CLASS):
            img = np.clip(palette[c] + rng.normal(0, 12, (SIZE, SIZE, 3)), 0, 255)
            row = 2 + 3 * c
            img[row : row + 3, :, :] = 255 - palette[c]
            out.append((encode_jpeg(img.astype(np.uint8), quality=95), c))
    return out


def write_prepared(root):
    root.mkdir(parents=True, exist_ok=True)
    info = write_recordio(root / "train.rec", _faces())
    assert info == {"num_images": N_IMAGES, "num_classes": N_CLASSES} or info["num_images"] == N_IMAGES
    # synthetic-style ground-truth quality, a permutation so it is not aligned with the labels
    gt = np.random.default_rng(1).permutation(N_IMAGES) / (N_IMAGES - 1)
    pd.DataFrame({"index": np.arange(N_IMAGES), "label": np.repeat(np.arange(N_CLASSES), PER_CLASS),
                  "gt_quality": gt}).to_parquet(root / "train_meta.parquet", index=False)
    return root


def make_params(prepared, tmp_path, runs=None, train=None, **extra) -> Params:
    base_train = {"epochs": 3, "batch_size": 16, "lr": 0.1, "num_workers": 0, "threads": 1, "device": "cpu",
                  "probe_size": 24, "milestones": [0.67], "amp": "auto"}
    base_train.update(train or {})
    raw = {
        "seed": 3,
        "data": {"prepared_dir": str(prepared)},
        "quality": {"output_dir": str(tmp_path / "quality")},
        "model": {"backbone": "ir_18", "width": 0.125, "input_size": SIZE, "embedding_size": 32, "dropout": 0.0},
        "train": base_train,
        "runs": runs or {"cos": {"head": "cosface", "head_params": {"s": 16.0, "m": 0.2}}},
        "runs_dir": str(tmp_path / "runs"),
        **extra,
    }
    return Params.model_validate(raw)
