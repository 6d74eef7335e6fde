"""Procedural faces: stable identities, per-image nuisance and their geometry (rendered by :mod:`.render`).

Geometry lives in the **template frame**: the 112 x 112 ArcFace crop, in which a frontal face of
average proportions has its five landmarks on the ArcFace template (eyes (38.3, 51.7), (73.5, 51.5),
nose tip (56.0, 71.7), mouth corners (41.5, 92.4), (70.7, 92.2)). An identity perturbs that geometry
by a few units; the nuisance of one image then moves it:

* **yaw** (out-of-plane rotation) is approximated on a sphere: a feature at horizontal offset ``x``
  from the face midline and depth ``z`` lands at ``cx + x cos(yaw) + z sin(yaw)`` (foreshortening
  plus a depth-dependent shift: the nose tip moves most, the head outline least);
* **roll, scale, shift** form a similarity transform of the template frame (``cv2.warpAffine``);
* **expression** bends the mouth (smile), opens it, raises the brows, closes the eyes (blink);
* **illumination**: a directional shading gradient, an ambient level, a colour cast and a soft
  darkening towards the face border; **background** and **clothing** colours;
* **occlusion**: a bar (scarf, object), a hand, sunglasses or a surgical mask.

Identities are grouped in families of :data:`FAMILY_SIZE` consecutive ids that share skin tone,
hair and eye colour and a base face shape, so neighbouring identities look alike and colour alone
does not separate them. Everything is a pure function of ``(seed, ids)`` through
:func:`rng_for`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Optional

import cv2
import numpy as np

__all__ = [
    "TEMPLATE_112",
    "FAMILY_SIZE",
    "OCCLUSIONS",
    "Identity",
    "Nuisance",
    "rng_for",
    "make_identity",
    "draw_nuisance",
    "jitter_nuisance",
    "pose_matrix",
    "loose_matrix",
    "CX",
    "TEXTURE_N",
]

#: ArcFace five-point template of the 112 x 112 crop (left eye, right eye, nose, left/right mouth).
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
FAMILY_SIZE = 4
#: Occlusion kinds and their probabilities (the rest of the mass is "no occlusion").
OCCLUSIONS: dict[str, float] = {"bar": 0.04, "hand": 0.04, "sunglasses": 0.03, "mask": 0.03}

#: Face midline (x) in the template frame.
CX = 56.0
_POSE_CENTRE = (56.0, 62.0)  # roll/scale pivot
#: Resolution of the identity skin-texture field (over the 112 frame).
TEXTURE_N = 28

_SKIN_TONES = np.array(
    [(245, 218, 196), (232, 196, 168), (214, 170, 132), (190, 140, 100), (160, 110, 74), (122, 82, 56), (86, 58, 42)],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [(22, 20, 19), (48, 34, 26), (85, 58, 38), (128, 90, 56), (196, 160, 104), (140, 64, 32), (140, 138, 134), (206, 204, 198)],
    dtype=np.float64,
)
_HAIR_COLOUR_P = np.array([0.26, 0.22, 0.17, 0.1, 0.09, 0.06, 0.06, 0.04])
_IRIS_COLOURS = np.array(
    [(52, 34, 24), (90, 58, 32), (112, 92, 48), (74, 104, 66), (70, 112, 160), (104, 116, 128)], dtype=np.float64
)
_IRIS_COLOUR_P = np.array([0.36, 0.24, 0.12, 0.1, 0.12, 0.06])
HAIR_STYLES = ("bald", "short", "fringe", "side_part", "long", "volume")
BEARDS = ("none", "moustache", "full", "goatee", "stubble")


# --------------------------------------------------------------------------- seeding
def _key(k: object) -> int:
    if isinstance(k, str):
        return zlib.crc32(k.encode("utf-8"))
    k = int(k)  # type: ignore[arg-type]
    if k < 0:
        raise ValueError(f"seed keys must be non-negative integers or strings, got {k}")
    return k


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """Generator seeded by ``SeedSequence([seed, *keys])`` (strings hashed with CRC-32).

    Independent streams for every ``(seed, split, identity, image)`` make generation order-free:
    any chunking or parallel schedule gives the same images.
    """
    return np.random.default_rng(np.random.SeedSequence([_key(seed), *(_key(k) for k in keys)]))


# --------------------------------------------------------------------------- identity
@dataclass(frozen=True)
class Identity:
    """Stable appearance of one synthetic person (template-frame units, RGB colours 0..255)."""

    id: int
    family: int
    skin: tuple[float, float, float]
    lip: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    brow_colour: tuple[float, float, float]
    # head outline
    face_cy: float
    face_ax: float
    face_ay_top: float
    face_ay_bot: float
    jaw: float
    # eyes
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_h: float
    eye_tilt: float
    iris_r: float
    # brows
    brow_gap: float
    brow_thick: float
    brow_arch: float
    brow_len: float
    brow_tilt: float
    # nose
    nose_y: float
    nose_w: float
    nostril: float
    # mouth
    mouth_y: float
    mouth_w: float
    lip_up: float
    lip_lo: float
    # ears
    ear_y: float
    ear_h: float
    # hair, beard, marks, glasses
    hair_style: str
    hairline: float
    temple_drop: float
    hair_volume: float
    hair_part: float
    beard: str
    moles: tuple[tuple[float, float, float], ...]
    glasses_p: float
    glasses_colour: tuple[float, float, float]
    glasses_round: bool
    texture: np.ndarray  # (TEXTURE_N, TEXTURE_N) float32, zero mean, unit-ish std
    texture_amp: float

    def landmarks(self) -> np.ndarray:
        """Frontal, neutral landmarks of this identity in the template frame (5, 2)."""
        return np.array(
            [
                [CX - self.eye_dx, self.eye_y],
                [CX + self.eye_dx, self.eye_y],
                [CX, self.nose_y],
                [CX - self.mouth_w, self.mouth_y],
                [CX + self.mouth_w, self.mouth_y],
            ]
        )


def _tone(palette: np.ndarray, t: float) -> np.ndarray:
    """Piecewise-linear colour along ``palette`` at ``t`` in [0, 1]."""
    t = float(np.clip(t, 0.0, 1.0)) * (len(palette) - 1)
    i = min(int(t), len(palette) - 2)
    f = t - i
    return (1 - f) * palette[i] + f * palette[i + 1]


def _rgb(c: np.ndarray) -> tuple[float, float, float]:
    c = np.clip(c, 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


@lru_cache(maxsize=8192)
def _family(seed: int, family: int) -> dict:
    r = rng_for(seed, "family", family)
    return {
        "skin_t": float(r.uniform(0.0, 1.0)),
        "hair": int(r.choice(len(_HAIR_COLOURS), p=_HAIR_COLOUR_P)),
        "iris": int(r.choice(len(_IRIS_COLOURS), p=_IRIS_COLOUR_P)),
        "face_ax": float(r.normal(37.5, 1.6)),
        "face_ay_bot": float(r.normal(53.0, 2.0)),
        "jaw": float(r.uniform(0.12, 0.36)),
        "eye_dx": float(r.normal(17.6, 0.8)),
        "nose_w": float(r.normal(6.8, 0.8)),
    }


@lru_cache(maxsize=4096)
def make_identity(seed: int, identity_id: int) -> Identity:
    """The identity ``identity_id`` of the synthetic population ``seed`` (pure function, cached)."""
    fam_id = int(identity_id) // FAMILY_SIZE
    fam = _family(int(seed), fam_id)
    r = rng_for(seed, "identity", identity_id)
    n = r.normal
    u = r.uniform

    skin = _tone(_SKIN_TONES, fam["skin_t"] + n(0, 0.05)) * (1 + n(0, 0.015, 3))
    hair_i = fam["hair"] if r.random() < 0.8 else int(r.choice(len(_HAIR_COLOURS), p=_HAIR_COLOUR_P))
    hair = _HAIR_COLOURS[hair_i] * (1 + n(0, 0.08))
    iris = _IRIS_COLOURS[fam["iris"] if r.random() < 0.75 else int(r.integers(len(_IRIS_COLOURS)))] * (1 + n(0, 0.1))
    lip = skin * np.array([0.86, 0.6, 0.6]) * (1 + n(0, 0.05, 3))
    brow_colour = 0.75 * hair + 0.25 * skin * 0.45 if hair_i < 6 else 0.5 * hair + 0.5 * skin * 0.5

    eye_dx = fam["eye_dx"] + n(0, 0.7)
    eye_h = float(np.clip(n(3.5, 0.45), 2.5, 4.6))
    style = HAIR_STYLES[int(r.choice(len(HAIR_STYLES), p=[0.08, 0.3, 0.16, 0.16, 0.18, 0.12]))]
    beard = BEARDS[int(r.choice(len(BEARDS), p=[0.66, 0.08, 0.12, 0.06, 0.08]))]
    moles = tuple(
        (float(u(24, 88)), float(u(40, 100)), float(u(0.6, 1.3))) for _ in range(int(r.choice(4, p=[0.45, 0.3, 0.17, 0.08])))
    )
    # Per-identity skin texture: two octaves of smoothed noise on a coarse grid.
    coarse = cv2.resize(r.standard_normal((7, 7)).astype(np.float32), (TEXTURE_N, TEXTURE_N), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(r.standard_normal((TEXTURE_N, TEXTURE_N)).astype(np.float32), (0, 0), 0.8)
    texture = coarse + 0.9 * fine / max(float(fine.std()), 1e-6)
    texture = (texture - texture.mean()) / max(float(texture.std()), 1e-6)

    return Identity(
        id=int(identity_id),
        family=fam_id,
        skin=_rgb(skin),
        lip=_rgb(lip),
        hair=_rgb(hair),
        iris=_rgb(iris),
        brow_colour=_rgb(brow_colour),
        face_cy=float(n(56.0, 1.2)),
        face_ax=float(fam["face_ax"] + n(0, 1.0)),
        face_ay_top=float(n(56.0, 1.5)),
        face_ay_bot=float(fam["face_ay_bot"] + n(0, 1.2)),
        jaw=float(np.clip(fam["jaw"] + n(0, 0.05), 0.05, 0.45)),
        eye_dx=float(eye_dx),
        eye_y=float(n(51.6, 1.2)),
        eye_w=float(np.clip(n(7.4, 0.6), 6.0, 8.8)),
        eye_h=eye_h,
        eye_tilt=float(n(4.0, 4.0)),
        iris_r=float(eye_h * u(0.95, 1.12)),
        brow_gap=float(n(9.5, 1.2)),
        brow_thick=float(u(1.8, 4.2)),
        brow_arch=float(u(0.5, 3.5)),
        brow_len=float(n(19.0, 1.5)),
        brow_tilt=float(n(0.0, 1.5)),
        nose_y=float(n(71.7, 1.6)),
        nose_w=float(np.clip(fam["nose_w"] + n(0, 0.6), 4.8, 9.5)),
        nostril=float(u(1.1, 2.0)),
        mouth_y=float(n(92.3, 1.5)),
        mouth_w=float(np.clip(n(14.6, 1.3), 11.0, 18.0)),
        lip_up=float(u(1.8, 4.0)),
        lip_lo=float(u(2.6, 5.2)),
        ear_y=float(n(60.0, 2.0)),
        ear_h=float(u(9.5, 13.0)),
        hair_style=style,
        hairline=float(n(20.0, 3.0) if style != "fringe" else n(31.0, 2.5)),
        temple_drop=float(u(12.0, 22.0) if style != "long" else u(28.0, 40.0)),
        hair_volume=float(u(2.0, 6.0) if style != "volume" else u(10.0, 18.0)),
        hair_part=float(u(-0.7, 0.7)),
        beard=beard,
        moles=moles,
        glasses_p=float(0.85 if r.random() < 0.15 else 0.0),
        glasses_colour=_rgb(np.array((30, 30, 35)) + u(0, 120) * np.array([1.0, 0.6, 0.4])),
        glasses_round=bool(r.random() < 0.5),
        texture=texture.astype(np.float32),
        texture_amp=float(u(0.025, 0.06)),
    )


# --------------------------------------------------------------------------- nuisance
@dataclass(frozen=True)
class Nuisance:
    """Everything about one image that is not identity (template-frame units, degrees for roll)."""

    yaw: float  # radians, + turns the features towards +x
    roll: float  # degrees
    scale: float
    shift: tuple[float, float]
    smile: float  # -0.4 (frown) .. 1 (broad smile)
    mouth_open: float  # 0 .. 1
    brow_raise: float  # -1 .. 1
    blink: bool
    gaze: tuple[float, float]
    glasses: bool
    light_angle: float  # radians, direction the light comes from
    light: float  # strength of the directional gradient
    ambient: float
    cast: tuple[float, float, float]  # per-channel gains
    background: np.ndarray  # (4, 4, 3) float32 colours, upsampled smoothly
    background_edge: Optional[tuple[float, float, float, float, float, float]]  # (x, y, angle, r, g, b) of a sharp edge
    clothing: tuple[float, float, float]
    occlusion: str  # "" or one of OCCLUSIONS
    occlusion_params: tuple[float, ...]


def _white_balance(temperature: float, tint: float) -> tuple[float, float, float]:
    """Per-channel gains of a colour temperature (+ warmer: more red, less blue) and a green tint."""
    return (1.0 + temperature, 1.0 + tint, 1.0 - temperature)


def draw_nuisance(rng: np.random.Generator, identity: Identity, *, occlusion: bool = True) -> Nuisance:
    """Draw the nuisance of one image (pose, expression, light, background, occlusion)."""
    n, u = rng.normal, rng.uniform
    # muted scene colours: a grey level plus a modest chroma, varying smoothly over a 4 x 4 grid
    grey = u(35, 215)
    base = grey + n(0, 22, 3)
    bg = np.clip(base + n(0, 22, (4, 4, 1)) + n(0, 7, (4, 4, 3)), 0, 255).astype(np.float32)
    edge = None
    if rng.random() < 0.4:
        edge = (float(u(-20, 132)), float(u(-20, 132)), float(u(0, 180)), *(float(c) for c in np.clip(base + n(0, 45, 3), 0, 255)))
    occ = ""
    if occlusion:
        kinds = list(OCCLUSIONS)
        p = np.array([OCCLUSIONS[k] for k in kinds])
        x = rng.random()
        cum = np.cumsum(p)
        if x < cum[-1]:
            occ = kinds[int(np.searchsorted(cum, x, side="right"))]
    occ_params = tuple(float(v) for v in u(0, 1, 8))
    return Nuisance(
        yaw=float(np.clip(n(0.0, 0.2), -0.55, 0.55)),
        roll=float(np.clip(n(0.0, 4.0), -12.0, 12.0)),
        scale=float(np.clip(n(1.0, 0.04), 0.9, 1.1)),
        shift=(float(np.clip(n(0, 1.5), -4, 4)), float(np.clip(n(0, 1.5), -4, 4))),
        smile=float(u(-0.4, 1.0)),
        mouth_open=float(0.0 if rng.random() < 0.7 else u(0.15, 1.0)),
        brow_raise=float(np.clip(n(0.0, 0.45), -1, 1)),
        blink=bool(rng.random() < 0.04),
        gaze=(float(n(0, 0.9)), float(n(0, 0.4))),
        glasses=bool(rng.random() < identity.glasses_p),
        light_angle=float(u(0, 2 * math.pi)),
        light=float(u(0.0, 0.45)),
        ambient=float(u(0.8, 1.08)),
        cast=_white_balance(float(np.clip(n(0.0, 0.045), -0.12, 0.12)), float(n(0.0, 0.012))),  # type: ignore[arg-type]
        background=bg,
        background_edge=edge,
        clothing=_rgb(u(20, 235, 3)),
        occlusion=occ,
        occlusion_params=occ_params,
    )


def jitter_nuisance(base: Nuisance, rng: np.random.Generator) -> Nuisance:
    """A nearby frame of the same medium (video): small changes of pose, expression and light."""
    n = rng.normal
    return replace(
        base,
        yaw=float(np.clip(base.yaw + n(0, 0.06), -0.6, 0.6)),
        roll=float(base.roll + n(0, 1.5)),
        scale=float(base.scale * (1 + n(0, 0.015))),
        shift=(base.shift[0] + float(n(0, 0.7)), base.shift[1] + float(n(0, 0.7))),
        smile=float(np.clip(base.smile + n(0, 0.15), -0.4, 1.0)),
        mouth_open=float(np.clip(base.mouth_open + n(0, 0.1), 0, 1)) if base.mouth_open > 0 else 0.0,
        brow_raise=float(np.clip(base.brow_raise + n(0, 0.15), -1, 1)),
        blink=bool(rng.random() < 0.04),
        gaze=(base.gaze[0] + float(n(0, 0.3)), base.gaze[1] + float(n(0, 0.2))),
        light=float(np.clip(base.light + n(0, 0.03), 0, 0.5)),
        ambient=float(np.clip(base.ambient + n(0, 0.02), 0.75, 1.1)),
    )


# --------------------------------------------------------------------------- transforms
def pose_matrix(nuisance: Nuisance, size: int) -> np.ndarray:
    """2x3 affine from the template frame to output pixels of an aligned ``size`` crop.

    Roll by ``nuisance.roll`` degrees and scale about (56, 62), shift, then ``size / 112``.
    """
    m = cv2.getRotationMatrix2D(_POSE_CENTRE, nuisance.roll, nuisance.scale).astype(np.float64)
    m[:, 2] += nuisance.shift
    return m * (size / 112.0)


def loose_matrix(rng: np.random.Generator, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A loose (unaligned) crop: template → loose-image affine and the loose image size (w, h).

    The face (``size`` / 112 pixels per template unit) is scaled by U(0.75, 1.25), rotated by
    N(0, 12°) (clipped to ±30°) and shifted by up to 12 % of the canvas, on a canvas of
    U(1.35, 1.8) x ``size`` pixels (width and height drawn separately).
    """
    w = int(round(size * rng.uniform(1.35, 1.8)))
    h = int(round(size * rng.uniform(1.35, 1.8)))
    sc = rng.uniform(0.75, 1.25) * size / 112.0
    angle = float(np.clip(rng.normal(0, 12), -30, 30))
    m = cv2.getRotationMatrix2D((56.0, 60.0), angle, sc).astype(np.float64)
    # Put the template point (56, 60) at the canvas centre plus a shift.
    m[:, 2] += np.array([w / 2 - 56.0, h / 2 - 60.0]) + rng.uniform(-0.12, 0.12, 2) * (w, h)
    return m, (w, h)


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 affine ``a ∘ b`` (apply ``b`` first)."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]
