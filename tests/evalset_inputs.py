"""Prepared layouts for the evaluation-set contract tests: one in the encodings outside tools write, a toy embedding.

:func:`write_tool_prepared` writes each built-in format the way the public releases and InsightFace's scripts
do, not with the project's writers: a ``.bin`` pickled by Python 3 with ``cv2.imencode`` arrays (one pair as
plain bytes), IJB meta files as space-separated text beside ``cv2.imwrite`` crops, TinyFace folders of
``cv2.imwrite`` JPEGs named ``<identity>_<k>.jpg``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np

from marginlab.core.config import EvaluateConfig
from marginlab.data.formats import ARCFACE_TEMPLATE_112
from marginlab.evalsets import EvalTools

IJB_SET = "IJBT"


def face_bgr(identity: int, variant: int, size: int = 112) -> np.ndarray:
    """A BGR uint8 'face': the identity's 4x4 colour pattern upscaled, with a little per-variant noise."""
    pattern = np.random.default_rng(500 + identity).integers(0, 256, (4, 4, 3)).astype(np.float64)
    img = cv2.resize(pattern, (size, size), interpolation=cv2.INTER_LINEAR)
    img = img + np.random.default_rng(variant).normal(scale=3.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf  # a (n, 1) uint8 array, as cv2 returns it


def write_tool_prepared(root: Path) -> Path:
    """A prepared directory with one set of each built-in format, written without marginlab's writers."""
    ver = root / "verification"
    ver.mkdir(parents=True)
    images, issame = [], []
    for i in range(10):  # 10 folds need >= 10 pairs: 5 genuine, 5 impostor
        same = i % 2 == 0
        images += [_jpeg(face_bgr(i, 1)), _jpeg(face_bgr(i if same else i + 20, 2))]
        issame.append(same)
    images[0] = images[0].tobytes()  # InsightFace's own .bin files hold bytes
    (ver / "lfw_t.bin").write_bytes(pickle.dumps((images, np.array(issame)), protocol=4))

    ijb = root / "ijb" / IJB_SET
    (ijb / "loose_crop").mkdir(parents=True)
    (ijb / "meta").mkdir()
    lm = " ".join(f"{v:.2f}" for v in ARCFACE_TEMPLATE_112.reshape(-1))
    faces, pts = [], []
    for tid in range(1, 7):  # 3 identities x 2 templates x 2 images
        for k in range(2):
            name = f"{tid}_{k}.jpg"
            cv2.imwrite(str(ijb / "loose_crop" / name), face_bgr((tid - 1) // 2, 10 * tid + k))
            faces.append(f"{name} {tid} {2 * tid + k}")
            pts.append(f"{name} {lm} 0.9")
    pairs = [f"{a} {b} {int((a - 1) // 2 == (b - 1) // 2)}" for a in range(1, 7) for b in range(a + 1, 7)]
    (ijb / "meta" / f"{IJB_SET}_face_tid_mid.txt").write_text("\n".join(faces) + "\n")
    (ijb / "meta" / f"{IJB_SET}_name_5pts_score.txt").write_text("\n".join(pts) + "\n")
    (ijb / "meta" / f"{IJB_SET}_template_pair_label.txt").write_text("\n".join(pairs) + "\n")

    tiny = root / "tinyface"
    for part in ("Probe", "Gallery_Match", "Gallery_Distractor"):
        (tiny / part).mkdir(parents=True)
    for ident in range(4):
        cv2.imwrite(str(tiny / "Probe" / f"{ident}_0.jpg"), face_bgr(ident, 60, size=24))
        cv2.imwrite(str(tiny / "Gallery_Match" / f"{ident}_1.jpg"), face_bgr(ident, 61))
    cv2.imwrite(str(tiny / "Gallery_Distractor" / "d_0.jpg"), face_bgr(99, 62))
    return root


def toy_tools(cfg: EvaluateConfig) -> EvalTools:
    """What the evaluate stage hands a format, with :func:`toy_embed` in place of a network."""
    from marginlab.evaluate import identification, ijb_protocol, verification

    return EvalTools(toy_embed, cfg, verification=verification, ijb=ijb_protocol, identification=identification)


def toy_embed(n: int, load, desc: str) -> np.ndarray:
    """An embedding function of the evaluation sets' contract: the 4x4 mean colours of each image (48-D)."""
    out = []
    for i in range(n):
        img = load(i)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, (desc, i, img.shape)
        out.append(cv2.resize(img, (4, 4), interpolation=cv2.INTER_AREA).astype(np.float64).reshape(-1) - 100.0)
    return np.stack(out)
