"""Face detection and alignment of raw photos (``data.align: detect``).

* :mod:`.detector`: MTCNN (facenet-pytorch's networks, weights from its wheel loaded as data), batched,
  CPU or CUDA; large photos are detected on a downscaled copy.
* :mod:`.cache`: detections stored in chunks keyed by image sha256 and detector settings (resumable,
  reused by every later prepare).
* :mod:`.policy`: which face to keep (``min_score``, ``multiple_faces``, ``no_face``) and the warp to
  the ArcFace template (:func:`marginlab.data.formats.five_point_alignment.align_face`).

The prepare side (folders and ``.bin`` files in, ``train.rec``/``.bin`` + ``alignment.parquet`` out) is
:mod:`marginlab.data.prepare.ingest_aligned`.
"""

from marginlab.data.align.cache import CachedDetection, detect_all, fingerprint
from marginlab.data.align.detector import Detections, Detector, weight_files
from marginlab.data.align.policy import STATUSES, Choice, aligned_crop, choose_face

__all__ = [
    "STATUSES",
    "CachedDetection",
    "Choice",
    "Detections",
    "Detector",
    "aligned_crop",
    "choose_face",
    "detect_all",
    "fingerprint",
    "weight_files",
]
