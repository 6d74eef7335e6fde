"""MTCNN face detection (facenet-pytorch's networks and cascade), batched, CPU or CUDA.

The three networks' weights ship inside the facenet-pytorch wheel (``facenet_pytorch/data/{p,r,o}net.pt``);
nothing is downloaded.  facenet-pytorch's own constructors load them with a bare ``torch.load``, so
the networks are built with ``pretrained=False`` here and their state dicts loaded as data
(:func:`marginlab.core.io.torch_load_data`, ``weights_only=True``).  The cascade itself is facenet-pytorch's
``detect_face`` (image pyramid, P-Net proposals, R-Net and O-Net refinement, NMS).

:meth:`Detector.detect` takes RGB ``uint8`` images of any sizes: an image whose longer side exceeds
``max_side`` is downscaled (area) for detection and the boxes/landmarks are mapped back to its own
pixels; consecutive images of one size are detected in one batch; an image whose shorter side is
below ``min_face_size`` cannot hold a searchable face and gets no detection (facenet-pytorch would
fail on an empty pyramid).

Speed on photos (issue #24): MTCNN's image pyramid starts at the scale where a ``min_face_size`` face
fills P-Net's 12-pixel window, so with a fixed 20-pixel floor a 1024x768 photo is searched at 11
scales, the finest (largest) ones costing most, and every scale is area-resampled from the whole
detection input.  A face in a photo is rarely smaller than a tenth of its shorter side, so
``min_face_fraction`` raises the floor towards that fraction of the detection input's shorter side, in
whole pyramid steps, so that the finest levels are skipped and the others are the very levels of
before (:meth:`Detector.min_face`, :meth:`Detector.pyramid_scales`).  That changes which faces can be
found: a face smaller than the fraction (a passer-by in the background, one face of a group photo) is
no longer searched.  ``min_face_fraction=0`` is the fixed floor of before; the cascade itself
(facenet-pytorch's ``detect_face``) is unchanged.  (Downscaling the detection input further, so that
the floor face is only ~48-64 pixels, was measured too and rejected: faster, but the landmark error
on the test scenes grew.)
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from marginlab.core.io import torch_load_data

__all__ = ["Detections", "Detector", "weight_files"]

_NETS = ("pnet", "rnet", "onet")
PYRAMID_FACTOR = 0.709  # MTCNN's scale step (the value of the original implementation and facenet-pytorch)


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, in that image's pixels: ``boxes`` (n, 4) x0, y0, x1, y1; ``scores``
    (n,) O-Net probability; ``landmarks`` (n, 5, 2) left eye, right eye, nose, left/right mouth."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def weight_files() -> dict[str, Path]:
    """The weight files inside the installed facenet-pytorch package (raises if it is missing)."""
    try:
        import facenet_pytorch  # noqa: F401  (its __init__ also imports the recognition model; harmless)
    except ImportError as exc:  # pragma: no cover - the environment installs it
        raise ImportError(
            "data.align: detect needs facenet-pytorch (MTCNN); install it without its dependencies: "
            "pip install --no-deps facenet-pytorch==2.6.0 (make env does)"
        ) from exc
    root = Path(os.path.dirname(facenet_pytorch.__file__)) / "data"
    files = {n: root / f"{n}.pt" for n in _NETS}
    for n, f in files.items():
        if not f.is_file():
            raise FileNotFoundError(f"facenet-pytorch is installed but its {n} weights {f} are missing")
    return files


class Detector:
    """MTCNN over batches of RGB uint8 images (see the module docstring)."""

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        max_side: int = 1024,
        batch_size: int = 16,
        min_face_fraction: float = 0.0,
    ) -> None:
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        self.device = torch.device(device)
        self.min_face_size = int(min_face_size)
        self.thresholds = [float(t) for t in thresholds]
        self.max_side = int(max_side)
        self.batch_size = int(batch_size)
        self.min_face_fraction = float(min_face_fraction)
        if not 0.0 <= self.min_face_fraction < 1.0:
            raise ValueError(f"detector: min_face_fraction must be in [0, 1), got {min_face_fraction}")
        files = weight_files()
        digest = hashlib.sha256()
        nets = []
        for name, cls in zip(_NETS, (PNet, RNet, ONet)):
            net = cls(pretrained=False)
            state = torch_load_data(files[name], map_location="cpu")  # weights as data, never code
            net.load_state_dict(state)
            nets.append(net.to(self.device).eval())
            digest.update(files[name].read_bytes())
        self.pnet, self.rnet, self.onet = nets
        self.weights_sha256 = digest.hexdigest()

    def settings(self) -> dict:
        """What the detections depend on (the cache fingerprint)."""
        from importlib.metadata import version

        return {
            "detector": "mtcnn",
            "facenet_pytorch": version("facenet-pytorch"),
            "weights_sha256": self.weights_sha256,
            "min_face_size": self.min_face_size,
            "thresholds": self.thresholds,
            "pyramid_factor": PYRAMID_FACTOR,
            "max_side": self.max_side,
            "device_type": self.device.type,  # CUDA kernels differ from CPU ones in the last bits
            # only when on, so that a cache filled with the fixed floor of before stays valid
            **({"min_face_fraction": self.min_face_fraction} if self.min_face_fraction > 0 else {}),
        }

    def min_face(self, shape: tuple[int, ...]) -> float:
        """The smallest face searched in a detection input of ``shape`` (H, W, ...), in its pixels:
        ``min_face_size``, raised towards ``min_face_fraction`` of the shorter side in whole pyramid
        steps (``min_face_size / PYRAMID_FACTOR**k``, the largest not above the fraction).  The levels
        searched are then a subset of those of the fixed floor, the coarse ones: a face well above the
        floor is found from the same candidates as before (a floor off the grid would shift every level
        and with it the boxes and scores of large faces)."""
        floor = self.min_face_fraction * min(shape[0], shape[1])
        size = float(self.min_face_size)
        if floor <= size:
            return size
        k = int(math.floor(math.log(floor / size) / -math.log(PYRAMID_FACTOR) + 1e-9))
        return size / PYRAMID_FACTOR**k

    def pyramid_scales(self, shape: tuple[int, ...]) -> list[float]:
        """The pyramid scales facenet-pytorch's ``detect_face`` searches a detection input of ``shape`` at
        (its own loop, restated): from ``12 / min_face`` down by :data:`PYRAMID_FACTOR` while the shorter
        side stays at least 12 pixels."""
        m = 12.0 / self.min_face(shape)
        minl = min(shape[0], shape[1]) * m
        scales = []
        scale = m
        while minl >= 12:
            scales.append(scale)
            scale *= PYRAMID_FACTOR
            minl *= PYRAMID_FACTOR
        return scales

    # ------------------------------------------------------------------ detection
    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections for each image (in its own pixels), in input order."""
        return self.detect_prepared([self.prepare(img) for img in images])

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """``(detection input, factor back to the image's pixels)``: the image, downscaled (area) when
        its longer side exceeds ``max_side``.  Callers holding many large photos keep only these."""
        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"detector: expected RGB uint8 (H, W, 3), got dtype={img.dtype} shape={img.shape}")
        h, w = img.shape[:2]
        f = min(1.0, self.max_side / max(h, w))
        if f >= 1.0:
            return img, 1.0
        small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        return small, w / small.shape[1]  # the factor actually applied (rounded size)

    def detect_prepared(self, prepared: Sequence[tuple[np.ndarray, float]]) -> list[Detections]:
        """Detections for :meth:`prepare` outputs; consecutive inputs of one size form one batch."""
        out: list[Detections] = [Detections.empty()] * len(prepared)
        searchable = [i for i, (img, _) in enumerate(prepared) if self.pyramid_scales(img.shape)]
        start = 0
        while start < len(searchable):  # images below min_face_size keep no detection (no pyramid level)
            shape = prepared[searchable[start]][0].shape
            end = start + 1
            while (end < len(searchable) and end - start < self.batch_size
                   and prepared[searchable[end]][0].shape == shape):
                end += 1
            group = searchable[start:end]
            for pos, det in zip(group, self._detect_batch([prepared[i][0] for i in group])):
                back = prepared[pos][1]
                out[pos] = Detections(det.boxes * back, det.scores, det.landmarks * back)
            start = end
        return out

    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        from facenet_pytorch.models.utils.detect_face import detect_face

        # GPU path: with device cuda the batch is moved once and the whole cascade runs there
        batch = torch.from_numpy(np.stack(images)).to(self.device)
        with torch.inference_mode():
            boxes, points = detect_face(
                batch, self.min_face(images[0].shape), self.pnet, self.rnet, self.onet, self.thresholds, PYRAMID_FACTOR, self.device
            )
        result = []
        for b, p in zip(boxes, points):
            b = np.asarray(b, dtype=np.float64).reshape(-1, 5)
            p = np.asarray(p, dtype=np.float64).reshape(-1, 5, 2)
            result.append(Detections(b[:, :4].copy(), b[:, 4].copy(), p))
        return result
