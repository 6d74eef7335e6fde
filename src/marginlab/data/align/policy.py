"""What to keep from an image's detections, and the aligned crop (``data.alignment`` policy keys).

:func:`choose_face` applies the policy to one image's detections:

* faces with a detector score below ``min_score`` are ignored;
* none left: status ``no_face`` (nothing detected) or ``low_score`` (only weak detections); the
  image is then dropped (``no_face: skip``) or kept as a centre crop (``no_face: center_crop``, the
  status becomes ``center_crop``);
* one or more left: status ``ok``; with several, the largest box (``multiple_faces: largest``) or the
  box whose centre is nearest the image centre (``central``) is kept.

:func:`aligned_crop` warps the kept face to the ArcFace template at ``size`` with
:func:`~marginlab.data.formats.five_point_alignment.align_face` (the similarity fit the IJB path uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marginlab.data.align.detector import Detections
from marginlab.data.formats.five_point_alignment import align_face
from marginlab.data.formats.images import square_resize

__all__ = ["STATUSES", "Choice", "aligned_crop", "choose_face"]

#: Every per-image outcome; ``kept`` ones go into the prepared set.
STATUSES = ("ok", "center_crop", "no_face", "low_score", "corrupt")
KEPT = ("ok", "center_crop")


@dataclass(frozen=True)
class Choice:
    status: str
    face: int  # index into the image's detections, -1 when none is used
    faces_found: int  # all detections
    faces_above_min_score: int

    @property
    def kept(self) -> bool:
        return self.status in KEPT


def choose_face(det: Detections, shape: tuple[int, int], *, min_score: float, multiple_faces: str, no_face: str) -> Choice:
    """The policy decision for one image of ``shape`` (H, W) with detections ``det``."""
    if multiple_faces not in ("largest", "central"):
        raise ValueError(f"data.alignment.multiple_faces: expected 'largest' or 'central', got {multiple_faces!r}")
    if no_face not in ("skip", "center_crop"):
        raise ValueError(f"data.alignment.no_face: expected 'skip' or 'center_crop', got {no_face!r}")
    good = np.flatnonzero(det.scores >= min_score)
    if good.size == 0:
        status = "no_face" if len(det) == 0 else "low_score"
        if no_face == "center_crop":
            status = "center_crop"
        return Choice(status, -1, len(det), 0)
    boxes = det.boxes[good]
    if multiple_faces == "largest":
        area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
        pick = int(np.argmax(area))  # first maximum wins: deterministic
    else:
        h, w = shape
        centre = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
        pick = int(np.argmin(np.hypot(centre[:, 0] - w / 2.0, centre[:, 1] - h / 2.0)))
    return Choice("ok", int(good[pick]), len(det), int(good.size))


def aligned_crop(image: np.ndarray, landmarks: np.ndarray | None, size: int) -> np.ndarray:
    """The ``size`` x ``size`` crop: warped to the template from ``landmarks`` (5, 2), or, with
    ``None`` (policy ``center_crop``), the centre square of the image resized."""
    if landmarks is None:
        return square_resize(image, size, "center_crop")
    return align_face(image, landmarks, size=size)
