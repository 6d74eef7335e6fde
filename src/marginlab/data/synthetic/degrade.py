"""Image-quality degradations with recorded severities, and the ground-truth quality they imply.

Five degradation types, each controlled by a severity ``s`` in [0, 1] (0 = untouched, 1 = the face
is no longer recognisable). Sizes are expressed for a 112-pixel face and scaled by ``unit`` (output
pixels per unit of the 112 template), so a loose crop with a smaller face is blurred proportionally.

==================  ==========================================================================
type                effect at severity ``s``
==================  ==========================================================================
``exposure``        contrast ``c = 1 - 0.8 s`` around mid-grey, then a shift of ``±0.4 s``
                    (under- or over-exposure, sign drawn per image), on [0, 1] intensities:
                    ``x' = clip(0.5 + c (x - 0.5) ± 0.4 s, 0, 1)``
``blur``            Gaussian blur, ``sigma = 4.0 s · unit`` pixels
``low_resolution``  down-scale to side ratio ``r = 1 - 0.9 s`` (area interpolation) and back up
                    (nearest, linear or cubic, drawn per image): 112 px → 11 px at ``s = 1``
``noise``           additive Gaussian noise, ``sigma = 60 s`` grey levels (of 255), per channel
``jpeg``            JPEG re-encoding at quality ``round(95 - 90 s)`` (95 … 5)
==================  ==========================================================================

They are applied in camera order: exposure (scene), blur (optics), low resolution (sensor),
noise (sensor), jpeg (storage).

Ground-truth quality (:func:`gt_quality`) multiplies the "remaining quality" of each type::

    gt_quality = prod_t (1 - s_t)

so a clean image has quality 1, any single maximal degradation gives 0, it decreases strictly in
every severity (while the others are < 1), and two moderate degradations compound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import cv2
import numpy as np

__all__ = [
    "DEGRADATION_TYPES",
    "Degradation",
    "QualityPolicy",
    "gt_quality",
    "sample_degradation",
    "apply_degradation",
    "apply_exposure",
    "apply_blur",
    "apply_low_resolution",
    "apply_noise",
    "apply_jpeg",
]

#: The degradation types, in the order they are applied.
DEGRADATION_TYPES: tuple[str, ...] = ("exposure", "blur", "low_resolution", "noise", "jpeg")

BLUR_MAX_SIGMA = 4.0  # pixels of a 112 face at s = 1
LOWRES_MAX_LOSS = 0.9  # side ratio 1 - 0.9 s
NOISE_MAX_SIGMA = 60.0  # grey levels at s = 1
JPEG_QUALITY_RANGE = (95, 5)  # quality at s = 0 and s = 1
EXPOSURE_MAX_CONTRAST_LOSS = 0.8
EXPOSURE_MAX_SHIFT = 0.4

_UPSCALE_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC)


def gt_quality(severities: Mapping[str, float]) -> float:
    """Ground-truth quality ``prod_t (1 - s_t)`` over the degradation severities (missing = 0)."""
    q = 1.0
    for t in DEGRADATION_TYPES:
        s = float(severities.get(t, 0.0))
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"severity of {t!r} must be in [0, 1], got {s}")
        q *= 1.0 - s
    return q


@dataclass(frozen=True)
class Degradation:
    """What is done to one image: a severity per type (0 = not applied) and its random choices."""

    severities: dict[str, float] = field(default_factory=dict)
    exposure_sign: float = 1.0  # +1 over-exposed, -1 under-exposed
    upscale_interpolation: int = cv2.INTER_LINEAR

    @property
    def types(self) -> tuple[str, ...]:
        """Applied types, in application order."""
        return tuple(t for t in DEGRADATION_TYPES if self.severities.get(t, 0.0) > 0.0)

    @property
    def name(self) -> str:
        """``'+'``-joined applied types (``''`` when clean), the ``degradations`` column."""
        return "+".join(self.types)

    @property
    def quality(self) -> float:
        return gt_quality(self.severities)

    def severity(self, t: str) -> float:
        return float(self.severities.get(t, 0.0))


@dataclass(frozen=True)
class QualityPolicy:
    """How degradations are drawn for a set of images.

    With probability ``fraction`` an image is degraded: ``k ~ U{1..max_per_image}`` distinct types
    are drawn without replacement with probabilities proportional to ``weights`` (types in
    ``required`` are always included and count towards ``k``), each with severity ``U(severity)``.
    """

    fraction: float
    severity: tuple[float, float] = (0.1, 1.0)
    max_per_image: int = 2
    weights: Mapping[str, float] = field(default_factory=lambda: {t: 1.0 for t in DEGRADATION_TYPES})
    required: tuple[str, ...] = ()
    required_severity: Optional[tuple[float, float]] = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"degraded fraction must be in [0, 1], got {self.fraction}")
        lo, hi = self.severity
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"severity range must satisfy 0 <= lo <= hi <= 1, got {self.severity}")
        if self.max_per_image < 1:
            raise ValueError(f"max_per_image must be >= 1, got {self.max_per_image}")
        unknown = (set(self.weights) | set(self.required)) - set(DEGRADATION_TYPES)
        if unknown:
            raise ValueError(f"unknown degradation types {sorted(unknown)}; known: {', '.join(DEGRADATION_TYPES)}")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"degradation weights must be >= 0, got {dict(self.weights)}")


def sample_degradation(policy: QualityPolicy, rng: np.random.Generator) -> Degradation:
    """Draw one image's degradation under ``policy`` (see :class:`QualityPolicy`)."""
    exposure_sign = float(rng.choice((-1.0, 1.0)))
    interp = int(_UPSCALE_INTERPOLATIONS[rng.integers(len(_UPSCALE_INTERPOLATIONS))])
    degraded = rng.random() < policy.fraction
    severities: dict[str, float] = {}
    if degraded:
        lo, hi = policy.severity
        for t in policy.required:
            rlo, rhi = policy.required_severity or policy.severity
            severities[t] = float(rng.uniform(rlo, rhi))
        candidates = [t for t in DEGRADATION_TYPES if policy.weights.get(t, 0.0) > 0 and t not in severities]
        k = int(rng.integers(1, policy.max_per_image + 1)) - len(severities)
        k = min(max(k, 0), len(candidates))
        if k:
            w = np.array([policy.weights[t] for t in candidates], dtype=np.float64)
            chosen = rng.choice(len(candidates), size=k, replace=False, p=w / w.sum())
            for i in sorted(chosen):
                severities[candidates[i]] = float(rng.uniform(lo, hi))
    return Degradation(
        severities={t: severities.get(t, 0.0) for t in DEGRADATION_TYPES},
        exposure_sign=exposure_sign,
        upscale_interpolation=interp,
    )


# --------------------------------------------------------------------------- individual operations
def _check(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got dtype={img.dtype} shape={img.shape}")
    return img


def apply_exposure(img: np.ndarray, s: float, sign: float = 1.0) -> np.ndarray:
    """Low contrast plus under/over-exposure: ``clip(0.5 + (1 - 0.8 s)(x - 0.5) + sign·0.4 s)``."""
    _check(img)
    if s <= 0:
        return img
    c = 1.0 - EXPOSURE_MAX_CONTRAST_LOSS * s
    shift = sign * EXPOSURE_MAX_SHIFT * s
    # x' = c·x + 255·(0.5 - 0.5c + shift), on 0..255 intensities; cv2 saturates and rounds.
    return cv2.convertScaleAbs(img, alpha=c, beta=255.0 * (0.5 - 0.5 * c + shift))


def apply_blur(img: np.ndarray, s: float, unit: float = 1.0) -> np.ndarray:
    """Gaussian blur with ``sigma = 4.0 · s · unit`` pixels (kernel radius 3 sigma)."""
    _check(img)
    sigma = BLUR_MAX_SIGMA * s * unit
    if sigma < 0.05:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def apply_low_resolution(img: np.ndarray, s: float, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Down-scale by side ratio ``1 - 0.9 s`` (area) and up-scale back with ``interpolation``."""
    _check(img)
    if s <= 0:
        return img
    h, w = img.shape[:2]
    r = 1.0 - LOWRES_MAX_LOSS * s
    small = cv2.resize(img, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=interpolation)


def apply_noise(img: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise with ``sigma = 60 s`` grey levels, independent per pixel and channel."""
    _check(img)
    if s <= 0:
        return img
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(NOISE_MAX_SIGMA * s)
    return np.clip(img.astype(np.float32) + noise, 0, 255).round().astype(np.uint8)


def apply_jpeg(img: np.ndarray, s: float) -> np.ndarray:
    """Round-trip through JPEG at quality ``round(95 - 90 s)``."""
    _check(img)
    if s <= 0:
        return img
    q0, q1 = JPEG_QUALITY_RANGE
    quality = int(round(q0 + (q1 - q0) * s))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - only on invalid input, excluded by _check
        raise RuntimeError("cv2.imencode failed")
    # Channel order is irrelevant for a round trip (encode and decode treat channels alike).
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def apply_degradation(
    img: np.ndarray, degradation: Degradation, rng: np.random.Generator, *, unit: float = 1.0
) -> np.ndarray:
    """Apply every degradation with non-zero severity, in :data:`DEGRADATION_TYPES` order.

    ``unit`` = output pixels per unit of the 112-pixel template (``image_size / 112`` for an aligned
    face, smaller for a face that fills less of a loose crop); it scales the blur only.
    """
    out = _check(img)
    s = degradation.severity
    out = apply_exposure(out, s("exposure"), degradation.exposure_sign)
    out = apply_blur(out, s("blur"), unit)
    out = apply_low_resolution(out, s("low_resolution"), degradation.upscale_interpolation)
    out = apply_noise(out, s("noise"), rng)
    out = apply_jpeg(out, s("jpeg"))
    return out


def severity_columns(degradation: Degradation) -> dict[str, float]:
    """``{"sev_<type>": severity}`` for every type (the metadata columns)."""
    return {f"sev_{t}": degradation.severity(t) for t in DEGRADATION_TYPES}


def policy_from_mix(mix: object, *, fraction: Optional[float] = None, severity: Sequence[float] = (0.1, 1.0)) -> QualityPolicy:
    """A :class:`QualityPolicy` from a ``DegradationMix`` config (weights, fraction, max per image)."""
    weights = {t: float(getattr(mix, t)) for t in DEGRADATION_TYPES}
    return QualityPolicy(
        fraction=float(mix.degraded_fraction if fraction is None else fraction),  # type: ignore[attr-defined]
        severity=(float(severity[0]), float(severity[1])),
        max_per_image=int(mix.max_per_image),  # type: ignore[attr-defined]
        weights=weights,
    )
