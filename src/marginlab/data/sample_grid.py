"""A labelled PNG grid of face images (``samples.png`` of the prepare stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from marginlab.core.io import atomic_path

__all__ = ["write_image_grid"]


def write_image_grid(
    path: str | Path, rows: Sequence[tuple[str, Sequence[np.ndarray]]], *, title: str = "", per_row: int = 8, cell: int = 112
) -> None:
    """Write rows of RGB ``uint8`` images as a PNG, one labelled strip per row (atomically).

    Each image is resized to ``cell`` x ``cell`` (area interpolation when shrinking); missing cells
    of a short row stay white. Uses matplotlib (Agg) for the labels.
    """
    # imported here, not at module level: selecting the Agg backend must not happen as a side effect of
    # importing marginlab.data (it would change the backend of whoever imports it)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("write_image_grid: no rows to draw")
    blank = np.full((cell, cell, 3), 255, np.uint8)
    fig, axes = plt.subplots(len(rows), 1, figsize=(per_row * 1.0 + 1.8, len(rows) * 1.06 + 0.4), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows):
        tiles = []
        for im in list(images)[:per_row]:
            im = np.asarray(im)
            if im.shape[:2] != (cell, cell):
                shrink = im.shape[0] > cell or im.shape[1] > cell
                im = cv2.resize(im, (cell, cell), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            tiles.append(im)
        tiles += [blank] * (per_row - len(tiles))
        strip = np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], axis=1)
        ax.imshow(strip)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.18, right=0.99, top=0.95 if title else 0.99, bottom=0.01, hspace=0.08)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
