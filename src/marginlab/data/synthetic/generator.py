"""Rendering the synthetic images: one :class:`ImageSpec` -> a degraded JPEG and its ground truth.

:func:`generate_image` draws the face (:mod:`.faces`, :mod:`.render`), degrades it (:mod:`.degrade`)
and encodes it; :func:`generate_images` does a list of specs, in a process pool when asked.  Every
image is a pure function of ``(seed, spec)``, so the number of workers never changes the bytes, and
the workers die with the process that started them (a ``kill -9`` of prepare leaves none behind).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from marginlab.core.config import SyntheticConfig
from marginlab.data.formats import encode_jpeg
from marginlab.data.synthetic.degrade import Degradation, QualityPolicy, apply_degradation, sample_degradation, severity_columns
from marginlab.data.synthetic.faces import draw_nuisance, jitter_nuisance, loose_matrix, make_identity, pose_matrix, rng_for
from marginlab.data.synthetic.layout import ImageSpec, quality_policies
from marginlab.data.synthetic.drawing import render_face

__all__ = ["SyntheticImage", "generate_image", "generate_images", "resolve_workers"]


@dataclass
class SyntheticImage:
    """A generated image: JPEG bytes (RGB content) and its ground truth."""

    jpeg: bytes
    landmarks: np.ndarray  # (5, 2) pixel coordinates in the stored image
    degradation: Degradation
    yaw: float
    roll: float
    occlusion: str
    size: tuple[int, int]  # (w, h)
    unit: float = 1.0

    @property
    def gt_quality(self) -> float:
        return self.degradation.quality

    def meta(self) -> dict:
        """Ground-truth columns shared by every metadata table."""
        return {
            "gt_quality": self.gt_quality,
            "degradations": self.degradation.name,
            **severity_columns(self.degradation),
            "yaw": self.yaw,
            "roll": self.roll,
            "occlusion": self.occlusion,
            "landmarks": self.landmarks.reshape(-1).astype(np.float32),  # x1, y1, ..., x5, y5 in pixels
        }


# --------------------------------------------------------------------------- one image
def generate_image(seed: int, spec: ImageSpec, cfg: SyntheticConfig, policies: Optional[dict[str, QualityPolicy]] = None) -> SyntheticImage:
    """Render, degrade and JPEG-encode one image (deterministic in ``(seed, spec)``)."""
    policies = policies or quality_policies(cfg)
    if spec.policy not in policies:
        raise KeyError(f"unknown quality policy {spec.policy!r}; known: {', '.join(policies)}")
    size = cfg.image_size
    idt = make_identity(seed, spec.identity)
    rng = rng_for(seed, spec.split, spec.identity, spec.image)
    if spec.media is None:
        nz = draw_nuisance(rng, idt, occlusion=spec.occlusion)
    else:
        base = draw_nuisance(rng_for(seed, spec.split, "media", spec.media), idt, occlusion=spec.occlusion)
        nz = jitter_nuisance(base, rng)
    if spec.loose:
        placement, out_size = loose_matrix(rng, size)
        # the pose of the face inside the loose crop (roll, scale, shift) composes with the placement
        pose = pose_matrix(nz, 112)
        affine = np.vstack([placement, [0, 0, 1]]) @ np.vstack([pose, [0, 0, 1]])
        affine = affine[:2]
    else:
        affine, out_size = pose_matrix(nz, size), (size, size)
    face = render_face(idt, nz, affine, out_size)
    deg = sample_degradation(policies[spec.policy], rng)
    img = apply_degradation(face.image, deg, rng, unit=face.unit)
    return SyntheticImage(
        jpeg=encode_jpeg(img, cfg.jpeg_quality),
        landmarks=face.landmarks,
        degradation=deg,
        yaw=nz.yaw,
        roll=nz.roll,
        occlusion=nz.occlusion,
        size=(int(out_size[0]), int(out_size[1])),
        unit=face.unit,
    )


class _Worker:
    """Picklable callable for process pools."""

    def __init__(self, seed: int, cfg: SyntheticConfig):
        self.seed, self.cfg = seed, cfg
        self.policies = quality_policies(cfg)

    def __call__(self, spec: ImageSpec) -> SyntheticImage:
        return generate_image(self.seed, spec, self.cfg, self.policies)


def resolve_workers(workers: int) -> int:
    """``workers`` <= 0 means one per available CPU core (at most 8)."""
    if workers > 0:
        return int(workers)
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _watch_parent(parent_pid: int) -> None:
    """Exit this process as soon as ``parent_pid`` is no longer its parent (polls once a second)."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _die_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: a worker must not outlive the process that started it, and ignores Ctrl-C
    (the parent cancels the queued work and reports one line instead of one traceback per worker).

    On Linux the kernel sends SIGKILL to the worker when its parent dies (``prctl(PR_SET_PDEATHSIG)``,
    so a ``kill -9`` of prepare leaves no generator running); elsewhere a daemon thread polls
    ``os.getppid()``.  If the parent died before this ran, the worker exits at once.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):  # pragma: no cover - libc without prctl
            armed = False
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent handles it
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:  # pragma: no cover - non-Linux
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def generate_images(
    seed: int, specs: Sequence[ImageSpec], cfg: SyntheticConfig, *, workers: int = 1, progress: bool = False, desc: str = "synthetic"
) -> list[SyntheticImage]:
    """Generate ``specs`` in order; ``workers`` > 1 uses a process pool (identical results) whose
    workers die with this process (:func:`_die_with_parent`)."""
    work = _Worker(seed, cfg)
    workers = resolve_workers(workers)
    bar = dict(total=len(specs), desc=desc, unit="img", disable=not progress)
    if workers == 1 or len(specs) < 64:
        return [work(s) for s in tqdm(specs, **bar)]
    chunk = max(16, min(256, len(specs) // (workers * 8) or 1))
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        return list(tqdm(pool.map(work, specs, chunksize=chunk), **bar))
    except BaseException:  # Ctrl-C or an error: drop the queued chunks instead of generating them all first
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
