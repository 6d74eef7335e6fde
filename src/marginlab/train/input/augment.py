"""AdaFace training augmentations on aligned RGB ``uint8`` faces (numpy + OpenCV).

The recipe of the published AdaFace runs (github.com/mk-minchul/AdaFace) applies three
augmentations, each independently with its own probability and in this order, then a flip:

1. **crop** – draw RandomResizedCrop parameters ``(i, j, h, w)`` with torchvision's rule (area
   fraction ``U(scale)``, aspect ratio log-uniform in ``ratio``, ``w = round(sqrt(A·r))``,
   ``h = round(sqrt(A/r))``, up to 10 attempts, then the centre-crop fallback) and paste the crop
   back **at its place** on a black canvas of the input size. The crop is *not* resized: the face
   keeps its scale and loses its surroundings.
2. **low resolution** – side ratio ``ρ ~ U(lowres_ratio)``; down-scale to
   ``(max(1, int(ρ·W)), max(1, int(ρ·H)))`` and back up to ``(W, H)``; the two interpolations are
   drawn independently from {nearest, linear, area, cubic, lanczos4}.
3. **photometric** – colour jitter with torchvision's ``ColorJitter`` semantics on ``uint8``
   tensors (hue 0): factors ``b ~ U(max(0, 1-β), 1+β)`` (same for contrast, saturation) applied in a
   random order, each as ``blend(x, y, f) = clip(f·x + (1-f)·y, 0, 255)`` truncated to ``uint8``
   with ``y = 0`` (brightness), ``y = mean(gray(x))`` (contrast) or ``y = gray(x)`` (saturation),
   ``gray = trunc(0.2989 R + 0.587 G + 0.114 B)``.
4. **flip** – horizontal flip with probability ``flip_p``.

All randomness comes from the ``numpy.random.Generator`` passed in, so an image's augmentation is a
pure function of that generator's state (the training dataset derives it from ``(seed, epoch, index)``).
Parameters are drawn first (:meth:`AdaFaceAugment.draw`) and applied second
(:meth:`AdaFaceAugment.apply`), so tests and analyses can inspect exactly what was done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from marginlab.core.config import AugmentConfig

__all__ = [
    "FLAG_NAMES",
    "INTERPOLATIONS",
    "AdaFaceAugment",
    "AugmentParams",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "low_resolution",
    "paste_crop",
    "random_resized_crop_params",
    "rgb_to_gray",
]

#: OpenCV interpolations the low-resolution augmentation draws from (down and up independently).
INTERPOLATIONS: tuple[int, ...] = (
    cv2.INTER_NEAREST,
    cv2.INTER_LINEAR,
    cv2.INTER_AREA,
    cv2.INTER_CUBIC,
    cv2.INTER_LANCZOS4,
)

#: Order of the flags in the per-sample ``aug`` record of the training dataset.
FLAG_NAMES: tuple[str, ...] = ("crop", "lowres", "photometric", "flip")

_JITTER_OPS = ("brightness", "contrast", "saturation")


# --------------------------------------------------------------------------- crop
def random_resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """Crop box ``(top, left, h, w)`` drawn with torchvision ``RandomResizedCrop.get_params``' rule.

    Up to 10 attempts: ``A = H·W·U(scale)``, ``r = exp(U(log ratio))``, ``w = round(sqrt(A r))``,
    ``h = round(sqrt(A / r))``; accepted when ``0 < w <= W`` and ``0 < h <= H``, with the corner
    uniform over the valid positions. Otherwise the fallback is the centred largest box whose aspect
    ratio is clamped to ``ratio`` (the whole image when its own ratio is inside the range).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"crop needs a non-empty image, got {height}x{width}")
    if not (0 < scale[0] <= scale[1]):
        raise ValueError(f"crop scale must satisfy 0 < min <= max, got {tuple(scale)}")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"crop ratio must satisfy 0 < min <= max, got {tuple(ratio)}")
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = round(w / min(ratio))
    elif in_ratio > max(ratio):
        h = height
        w = round(h * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def paste_crop(img: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    """Black canvas of ``img``'s shape holding ``img[top:top+h, left:left+w]`` at the same place."""
    out = np.zeros_like(img)
    out[top : top + h, left : left + w] = img[top : top + h, left : left + w]
    return out


# --------------------------------------------------------------------------- low resolution
def low_resolution(img: np.ndarray, side_ratio: float, down: int, up: int) -> np.ndarray:
    """Down-scale by ``side_ratio`` with interpolation ``down``, back to the input size with ``up``."""
    height, width = img.shape[:2]
    small = (max(1, int(side_ratio * width)), max(1, int(side_ratio * height)))
    tiny = cv2.resize(img, small, interpolation=down)
    return cv2.resize(tiny, (width, height), interpolation=up)


# --------------------------------------------------------------------------- photometric
def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """Luma ``0.2989 R + 0.587 G + 0.114 B`` truncated to ``uint8`` (torchvision tensor semantics)."""
    f = img.astype(np.float32)
    gray = 0.2989 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    return gray.astype(np.uint8)


def _blend(img: np.ndarray, other: np.ndarray | np.floating | float, factor: float) -> np.ndarray:
    out = factor * img.astype(np.float32) + (1.0 - factor) * other
    np.clip(out, 0.0, 255.0, out=out)
    return out.astype(np.uint8)  # truncation, as torch's .to(uint8)


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """``clip(f·x, 0, 255)`` truncated to uint8; ``f = 1`` returns the image unchanged."""
    if factor < 0:
        raise ValueError(f"brightness factor must be non-negative, got {factor}")
    return _blend(img, 0.0, factor)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the mean of the (uint8) grayscale image: ``clip(f·x + (1-f)·mean(gray))``."""
    if factor < 0:
        raise ValueError(f"contrast factor must be non-negative, got {factor}")
    mean = np.float32(rgb_to_gray(img).mean(dtype=np.float64))
    return _blend(img, mean, factor)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the grayscale image: ``clip(f·x + (1-f)·gray(x))``; ``f = 0`` gives gray."""
    if factor < 0:
        raise ValueError(f"saturation factor must be non-negative, got {factor}")
    gray = rgb_to_gray(img).astype(np.float32)[..., None]
    return _blend(img, gray, factor)


_ADJUST = {"brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation}


def _jitter_range(strength: float) -> tuple[float, float] | None:
    """torchvision's ``ColorJitter`` range for a non-negative strength (``None`` = off)."""
    if strength == 0:
        return None
    return (max(0.0, 1.0 - strength), 1.0 + strength)


# --------------------------------------------------------------------------- the augmenter
@dataclass
class AugmentParams:
    """Everything one call drew; ``None`` means that augmentation was not applied."""

    crop: tuple[int, int, int, int] | None = None  # (top, left, h, w)
    lowres: tuple[float, int, int] | None = None  # (side ratio, down interp, up interp)
    photometric: list[tuple[str, float]] | None = None  # [(op, factor)] in application order
    flip: bool = False

    @property
    def flags(self) -> dict[str, bool]:
        return {
            "crop": self.crop is not None,
            "lowres": self.lowres is not None,
            "photometric": self.photometric is not None,
            "flip": self.flip,
        }


@dataclass
class AdaFaceAugment:
    """AdaFace augmentation pipeline (crop → low resolution → photometric → flip).

    ``aug(img, rng) -> (img, flags)`` with ``img`` an RGB ``uint8`` ``H×W×3`` array (not modified in
    place) and ``flags`` a dict of bools ``crop``, ``lowres``, ``photometric``, ``flip``.
    """

    cfg: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.cfg, AugmentConfig):
            raise TypeError(f"AdaFaceAugment expects an AugmentConfig, got {type(self.cfg).__name__}")
        lo, hi = self.cfg.lowres_ratio
        if not (0 < lo <= hi <= 1):
            raise ValueError(f"augment.lowres_ratio must satisfy 0 < min <= max <= 1, got {(lo, hi)}")
        # validate crop ranges once, with a throwaway draw on a 1x1 image
        random_resized_crop_params(1, 1, self.cfg.crop_scale, self.cfg.crop_ratio, np.random.default_rng(0))
        self._ranges = {
            "brightness": _jitter_range(self.cfg.brightness),
            "contrast": _jitter_range(self.cfg.contrast),
            "saturation": _jitter_range(self.cfg.saturation),
        }

    # ------------------------------------------------------------------ drawing
    def draw(self, rng: np.random.Generator, height: int, width: int) -> AugmentParams:
        """Draw all random choices for one ``height × width`` image, in a fixed order."""
        cfg = self.cfg
        params = AugmentParams()
        if rng.random() < cfg.crop_p:
            params.crop = random_resized_crop_params(height, width, cfg.crop_scale, cfg.crop_ratio, rng)
        if rng.random() < cfg.lowres_p:
            ratio = float(rng.uniform(*cfg.lowres_ratio))
            down, up = (INTERPOLATIONS[int(k)] for k in rng.integers(0, len(INTERPOLATIONS), size=2))
            params.lowres = (ratio, down, up)
        if rng.random() < cfg.photometric_p:
            order = rng.permutation(len(_JITTER_OPS))
            ops = []
            for k in order:
                name = _JITTER_OPS[int(k)]
                rng_range = self._ranges[name]
                if rng_range is not None:
                    ops.append((name, float(rng.uniform(*rng_range))))
            params.photometric = ops
        params.flip = bool(rng.random() < cfg.flip_p)
        return params

    # ------------------------------------------------------------------ applying
    @staticmethod
    def apply(img: np.ndarray, params: AugmentParams) -> np.ndarray:
        """Apply drawn parameters; returns a new C-contiguous array (the input is never modified)."""
        out = img
        if params.crop is not None:
            out = paste_crop(out, *params.crop)
        if params.lowres is not None:
            out = low_resolution(out, *params.lowres)
        if params.photometric is not None:
            for name, factor in params.photometric:
                out = _ADJUST[name](out, factor)
        if params.flip:
            out = cv2.flip(out, 1)  # = out[:, ::-1], but contiguous and ~30x faster than copying that view
        return img.copy() if out is img else out

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, bool]]:
        _check_image(img)
        params = self.draw(rng, img.shape[0], img.shape[1])
        return self.apply(img, params), params.flags


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", None)
        dtype = getattr(img, "dtype", type(img).__name__)
        raise ValueError(f"augmentation expects an RGB uint8 HxWx3 array, got shape {shape} dtype {dtype}")
