"""The network's input convention, one definition for training and evaluation alike.

RGB ``uint8`` faces -> ``float32`` CHW tensors: resize to the model's ``input_size``
(:func:`resize_to`: ``cv2.INTER_AREA`` when shrinking, ``cv2.INTER_LINEAR`` when enlarging, nothing
when equal), reorder channels (``"BGR"`` like the official AdaFace/InsightFace models, or ``"RGB"``)
and normalise with :data:`NORMALISATION` to ``[-1, 1]``.  Batches go through :func:`to_model_input`
(evaluation, the training probe); the training dataset applies :func:`resize_to` and
:func:`normalised_chw` per sample after augmenting.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

__all__ = ["CHANNEL_ORDERS", "NORMALISATION", "check_channel_order", "normalised_chw", "resize_to", "to_model_input"]

#: The normalisation of a uint8 value ``x`` (recorded as ``manifest["normalisation"]`` by prepare).
NORMALISATION = "(x / 255 - 0.5) / 0.5"

CHANNEL_ORDERS = ("BGR", "RGB")

#: uint8 value -> (v / 255 - 0.5) / 0.5 in float32, evaluated once with exactly that formula.
_NORMALISE_LUT = ((np.arange(256, dtype=np.float32) / np.float32(255.0)) - np.float32(0.5)) / np.float32(0.5)


def check_channel_order(channel_order: str) -> None:
    """Raise ``ValueError`` unless ``channel_order`` is one of :data:`CHANNEL_ORDERS`."""
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")


def resize_to(img: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``H×W×3`` image to ``size×size``: INTER_AREA when shrinking, INTER_LINEAR when enlarging."""
    h, w = img.shape[:2]
    if h == size and w == size:
        return img
    interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def normalised_chw(img: np.ndarray, channel_order: str) -> np.ndarray:
    """RGB uint8 ``H×W×3`` (or ``N×H×W×3``) -> float32 CHW in ``channel_order``, ``(x/255-0.5)/0.5``."""
    chw = np.moveaxis(img, -1, -3)
    if channel_order == "BGR":
        chw = chw[..., ::-1, :, :]
    return np.take(_NORMALISE_LUT, chw)  # fresh contiguous float32 array


def to_model_input(
    images: np.ndarray | Sequence[np.ndarray], input_size: int, channel_order: str = "BGR"
) -> torch.Tensor:
    """RGB ``uint8`` faces ``(N,H,W,3)`` (or a list of ``H×W×3``) -> model input ``float32 (N,3,S,S)``.

    The single definition of the network's input convention, used by training and evaluation alike:
    resize to ``S = input_size`` (:func:`resize_to`), reorder channels (``"BGR"`` = the official
    AdaFace/InsightFace models, ``"RGB"``), normalise ``(x/255 - 0.5)/0.5`` to ``[-1, 1]``.
    """
    check_channel_order(channel_order)
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"to_model_input expects RGB images of shape (N,H,W,3), got {images.shape}")
        batch = list(images)
        if images.dtype != np.uint8:
            raise ValueError(f"to_model_input expects uint8 images, got dtype {images.dtype}")
    else:
        batch = list(images)
        for k, im in enumerate(batch):
            if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
                raise ValueError(
                    f"to_model_input: image {k} must be an RGB uint8 HxWx3 array, got "
                    f"shape {getattr(im, 'shape', None)} dtype {getattr(im, 'dtype', type(im).__name__)}"
                )
    if not batch:
        return torch.empty((0, 3, input_size, input_size), dtype=torch.float32)
    stacked = np.stack([resize_to(im, input_size) for im in batch])
    return torch.from_numpy(normalised_chw(stacked, channel_order))
