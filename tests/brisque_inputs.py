"""Inputs for the quality tests (tests/quality/): natural-looking images, a lazy (split, index, loader) stream,
and a tiny prepared directory in the contract layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def natural_images(n: int, h: int = 112, w: int = 112, seed: int = 0) -> np.ndarray:
    """Face-sized RGB uint8 images with natural-ish statistics: smoothed noise, edges, some noise."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        base = cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)).astype(np.float32), (0, 0), rng.uniform(1.5, 6))
        base = (base - base.min()) / (np.ptp(base) + 1e-6) * 160 + 40
        for _ in range(3):  # a few flat-shaded rectangles give edges
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            base[y0:y0 + rng.integers(4, h // 2), x0:x0 + rng.integers(4, w // 2)] += rng.uniform(-50, 50, 3)
        base += rng.normal(0, rng.uniform(0, 12), base.shape)
        out[i] = np.clip(base, 0, 255).astype(np.uint8)
    return out


def image_stream(images: dict[str, np.ndarray], calls: list | None = None, fail_after: int | None = None):
    """(split, index, lazy loader) items; records loader calls; raises after ``fail_after`` items."""
    n = 0
    for split, arr in images.items():
        for i in range(len(arr)):
            if fail_after is not None and n >= fail_after:
                raise KeyboardInterrupt("simulated kill")
            n += 1

            def load(split=split, i=i, arr=arr):
                if calls is not None:
                    calls.append((split, i))
                return arr[i]

            yield split, i, load


def write_prepared_layout(root: Path) -> dict:
    """A tiny prepared directory in the contract layout, written with the formats module."""
    from marginlab.data.formats import encode_jpeg, encode_png, write_bin, write_ijb_meta, write_recordio

    train = natural_images(6, seed=11)
    write_recordio(root / "train.rec", [(encode_jpeg(img), i // 2) for i, img in enumerate(train)])
    pd.DataFrame({"index": np.arange(6), "label": np.arange(6) // 2,
                  "gt_quality": [1.0, 0.8, 0.6, 0.4, 0.2, 0.1],
                  "degradations": ["", "noise", "noise", "blur", "blur+noise", "noise"]}).to_parquet(root / "train_meta.parquet")
    ver = natural_images(4, seed=12)
    write_bin(root / "verification" / "hq.bin", [encode_png(v) for v in ver], [True, False])
    crops = natural_images(2, 128, 128, seed=13)
    ijb = root / "ijb" / "ijb_syn"
    (ijb / "loose_crop").mkdir(parents=True)
    for i, c in enumerate(crops):
        (ijb / "loose_crop" / f"{i}.png").write_bytes(encode_png(c))
    lm = np.array([38.3, 51.7, 73.5, 51.5, 56.0, 71.7, 41.5, 92.4, 70.7, 92.2]) + 8
    write_ijb_meta(ijb, "ijb_syn", pd.DataFrame({"image": ["0.png", "1.png"], "tid": [1, 2], "mid": [1, 2],
                                                 "landmarks": [lm, lm], "score": [0.9, 0.9]}),
                   pd.DataFrame({"tid1": [1], "tid2": [2], "label": [0]}))
    tiny = natural_images(3, 24, 20, seed=14)
    for part, names in (("Probe", ["1_0.png"]), ("Gallery_Match", ["1_1.png", "2_0.png"])):
        (root / "tinyface" / part).mkdir(parents=True)
        for n in names:
            (root / "tinyface" / part / n).write_bytes(encode_png(tiny[len(list((root / "tinyface").rglob("*.png")))]))
    return {"train": train, "bin:hq": ver}
