"""Unaligned photos of synthetic faces: the test input of ``data.align: detect``.

:func:`render_scene` draws one identity's face (the generator's identities and nuisance,
:mod:`marginlab.data.synthetic.faces`, :mod:`~marginlab.data.synthetic.drawing`) into a larger canvas with a random scale, in-plane rotation (up to
``max_rotation`` degrees) and translation, and scatters background clutter (rectangles, discs, lines,
blotches) outside the head.  It returns the true five landmarks in canvas pixels, so the alignment a
detector finds can be scored against the truth.  :func:`render_aligned` draws the same face (same
identity, same nuisance) as the generator's aligned 112 x 112 crop: the "originally aligned" twin.

Everything is a pure function of ``(seed, identity, image)`` and the arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from marginlab.data.synthetic.drawing import render_face
from marginlab.data.synthetic.faces import draw_nuisance, make_identity, pose_matrix, rng_for

__all__ = ["Scene", "render_aligned", "render_scene", "write_scene_dataset"]

_TEMPLATE_CENTRE = (56.0, 62.0)  # the pose centre of the template frame (faces.pose_matrix)


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # RGB uint8 (H, W, 3)
    landmarks: np.ndarray  # (5, 2) true landmarks in image pixels (ArcFace template order)
    affine: np.ndarray  # 2x3: template frame -> image pixels (pose of the face included)
    scale: float  # image pixels per template unit
    rotation: float  # degrees of the placement (the nuisance roll comes on top)


def _nuisance(seed: int, identity: int, image: int):
    idt = make_identity(seed, identity)
    nz = draw_nuisance(rng_for(seed, "scene", identity, image), idt, occlusion=False)
    return idt, nz


def render_aligned(seed: int, identity: int, image: int, size: int = 112) -> Scene:
    """The face of :func:`render_scene` ``(seed, identity, image)`` as an aligned ``size`` crop."""
    idt, nz = _nuisance(seed, identity, image)
    affine = pose_matrix(nz, size)
    face = render_face(idt, nz, affine, (size, size))
    return Scene(face.image, face.landmarks, affine, size / 112.0, 0.0)


def render_scene(
    seed: int,
    identity: int,
    image: int,
    *,
    canvas: tuple[int, int] = (256, 256),
    face_px: tuple[float, float] = (80.0, 150.0),
    max_rotation: float = 30.0,
    clutter: int = 12,
    extra_faces: int = 0,
) -> Scene:
    """One unaligned photo: canvas ``(W, H)``, face template width (112 units) drawn ``face_px`` wide
    (uniform in the range), rotated by U(-max_rotation, max_rotation), shifted so the head stays inside,
    ``clutter`` shapes behind nothing but the background; ``extra_faces`` more (other identities,
    smaller) placed in a free corner for the several-faces tests."""
    w, h = int(canvas[0]), int(canvas[1])
    rng = rng_for(seed, "scene-placement", identity, image)
    idt, nz = _nuisance(seed, identity, image)
    sc = float(rng.uniform(*face_px)) / 112.0
    sc = min(sc, 0.8 * min(w, h) / 112.0)
    angle = float(rng.uniform(-max_rotation, max_rotation))
    free_x, free_y = max(0.0, w / 2 - 60 * sc), max(0.0, h / 2 - 60 * sc)
    centre = np.array([w / 2 + rng.uniform(-free_x, free_x), h / 2 + rng.uniform(-free_y, free_y)])
    if extra_faces:
        centre = np.array([w * 0.33, h * 0.5])
    place = cv2.getRotationMatrix2D(_TEMPLATE_CENTRE, angle, sc).astype(np.float64)
    place[:, 2] += centre - np.array(_TEMPLATE_CENTRE)
    affine = (np.vstack([place, [0, 0, 1]]) @ np.vstack([pose_matrix(nz, 112), [0, 0, 1]]))[:2]
    face = render_face(idt, nz, affine, (w, h))
    img = face.image.copy()
    _clutter(img, rng, clutter, centre, 75.0 * sc)
    for k in range(extra_faces):
        other = render_scene(seed, identity + 1000 + k, image, canvas=(int(w * 0.3), int(h * 0.45)),
                             face_px=(0.6 * 112 * sc, 0.6 * 112 * sc + 1), max_rotation=0.0, clutter=0)
        oh, ow = other.image.shape[:2]
        y0, x0 = int(h * 0.3), int(w * 0.66)
        img[y0 : y0 + oh, x0 : x0 + ow] = other.image[: h - y0, : w - x0]
    return Scene(img, face.landmarks, affine, sc, angle)


def _clutter(img: np.ndarray, rng: np.random.Generator, n: int, centre: np.ndarray, radius: float) -> None:
    """Random shapes and blotches, kept outside a disc of ``radius`` around the face centre."""
    h, w = img.shape[:2]
    layer = img.copy()
    for _ in range(n):
        colour = tuple(float(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 4))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        s = int(rng.integers(max(4, min(w, h) // 20), max(5, min(w, h) // 5)))
        if kind == 0:
            cv2.rectangle(layer, (x, y), (x + s, y + int(s * rng.uniform(0.3, 2))), colour, -1)
        elif kind == 1:
            cv2.circle(layer, (x, y), s // 2, colour, -1, lineType=cv2.LINE_AA)
        elif kind == 2:
            cv2.line(layer, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))), colour, int(rng.integers(1, 5)), cv2.LINE_AA)
        else:
            pts = rng.integers(-s, s, (5, 2)) + np.array([x, y])
            cv2.fillPoly(layer, [pts.astype(np.int32)], colour, lineType=cv2.LINE_AA)
    yy, xx = np.mgrid[0:h, 0:w]
    outside = np.hypot(xx - centre[0], yy - centre[1]) > radius
    img[outside] = layer[outside]


def write_scene_dataset(
    root,
    *,
    seed: int = 0,
    identities: int = 8,
    per_identity: int = 6,
    val_identities: int = 6,
    val_pairs: int = 20,
    canvas: tuple[int, int] = (192, 192),
    face_px: tuple[float, float] = (70.0, 120.0),
) -> dict:
    """Twin datasets of the same faces for the alignment tests and benchmark, under ``root``:

    * ``raw/<id>/<k>.jpg`` and ``raw_val.bin``: unaligned scenes (:func:`render_scene`);
    * ``orig/<id>/<k>.jpg`` and ``orig_val.bin``: the same faces as aligned 112 crops (:func:`render_aligned`);
    * ``truth.parquet``: ``set``, ``path`` (or ``.bin`` + ``image``), ``identity``, true ``landmarks`` (10 floats, raw image pixels).

    Validation identities follow the training ones (disjoint); pairs alternate genuine/impostor.
    Returns the paths.
    """
    from pathlib import Path

    import pandas as pd

    from marginlab.data.formats import encode_jpeg, write_bin

    root = Path(root)
    rows = []
    for tree in ("raw", "orig"):
        (root / tree).mkdir(parents=True, exist_ok=True)
    for c in range(identities):
        for k in range(per_identity):
            sc = render_scene(seed, c, k, canvas=canvas, face_px=face_px)
            for tree, img in (("raw", sc.image), ("orig", render_aligned(seed, c, k).image)):
                path = root / tree / f"id{c:04d}" / f"{k:03d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(encode_jpeg(img, quality=95))
            rows.append({"set": "train", "path": str(root / "raw" / f"id{c:04d}" / f"{k:03d}.jpg"), "image": -1,
                         "identity": c, "landmarks": sc.landmarks.reshape(-1).tolist()})
    rng = np.random.default_rng(seed + 1)
    raw_imgs, orig_imgs, issame = [], [], []
    first = identities
    for p in range(val_pairs):
        a = first + int(rng.integers(val_identities))
        b = a if p % 2 == 0 else first + int((a - first + rng.integers(1, val_identities)) % val_identities)
        for j, ident in enumerate((a, b)):
            img_id = 100 + 2 * p + j
            sc = render_scene(seed, ident, img_id, canvas=canvas, face_px=face_px)
            raw_imgs.append(encode_jpeg(sc.image, quality=95))
            orig_imgs.append(encode_jpeg(render_aligned(seed, ident, img_id).image, quality=95))
            rows.append({"set": "val", "path": str(root / "raw_val.bin"), "image": 2 * p + j, "identity": ident,
                         "landmarks": sc.landmarks.reshape(-1).tolist()})
        issame.append(a == b)
    write_bin(root / "raw_val.bin", raw_imgs, issame)
    write_bin(root / "orig_val.bin", orig_imgs, issame)
    pd.DataFrame(rows).to_parquet(root / "truth.parquet", index=False)
    return {"raw": root / "raw", "orig": root / "orig", "raw_val": root / "raw_val.bin",
            "orig_val": root / "orig_val.bin", "truth": root / "truth.parquet"}
