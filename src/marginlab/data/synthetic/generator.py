"""Which synthetic images exist, their rendering (in worker processes) and the files they are written to.

See the package docstring (:mod:`marginlab.data.synthetic`) for the splits, the metadata tables and
the determinism contract.
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
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from marginlab.config import SyntheticConfig
from marginlab.data.synthetic.degrade import (
    DEGRADATION_TYPES,
    Degradation,
    QualityPolicy,
    apply_degradation,
    policy_from_mix,
    sample_degradation,
    severity_columns,
)
from marginlab.data.formats import decode_image, encode_jpeg, write_bin, write_ijb_meta, write_recordio
from marginlab.data.sample_grid import write_image_grid
from marginlab.data.synthetic.faces import (
    FAMILY_SIZE,
    draw_nuisance,
    jitter_nuisance,
    loose_matrix,
    make_identity,
    pose_matrix,
    render_face,
    rng_for,
)
from marginlab.io import write_parquet

__all__ = [
    "IJB_NAME",
    "MAX_IJB_IMPOSTORS",
    "TINYFACE_PROBES",
    "TINYFACE_GALLERY",
    "ImageSpec",
    "SyntheticImage",
    "identity_blocks",
    "quality_policies",
    "generate_image",
    "generate_images",
    "verification_pairs",
    "ijb_layout",
    "write_synthetic",
    "render_samples_png",
]

IJB_NAME = "ijb_syn"
MAX_IJB_IMPOSTORS = 200_000
TINYFACE_PROBES = 2
TINYFACE_GALLERY = 2
VERIFICATION_BINS = ("hq", "lq")
_SEV_COLUMNS = [f"sev_{t}" for t in DEGRADATION_TYPES]


# --------------------------------------------------------------------------- specs and policies
@dataclass(frozen=True)
class ImageSpec:
    """One image to generate: its random stream key, quality policy and framing."""

    split: str  # seed namespace, e.g. "train", "hq", "ijb", "tinyface_probe"
    identity: int  # global identity id
    image: int  # index within (split, identity)
    policy: str  # key of quality_policies()
    loose: bool = False  # loose crop (IJB) instead of an aligned face
    occlusion: bool = True
    media: Optional[int] = None  # frames of one medium share a base nuisance


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


def quality_policies(cfg: SyntheticConfig) -> dict[str, QualityPolicy]:
    """The degradation policies of the synthetic splits (see the module docstring)."""
    mix = cfg.degradation
    weights = {t: float(getattr(mix, t)) for t in DEGRADATION_TYPES}
    return {
        "train": policy_from_mix(mix, severity=(0.1, 1.0)),
        "hq": QualityPolicy(fraction=0.1, severity=(0.05, 0.3), max_per_image=1, weights=weights),
        "lq": QualityPolicy(fraction=0.85, severity=(0.3, 1.0), max_per_image=mix.max_per_image, weights=weights),
        "mixed": QualityPolicy(fraction=0.5, severity=(0.1, 1.0), max_per_image=mix.max_per_image, weights=weights),
        "tinyface_probe": QualityPolicy(
            fraction=1.0,
            severity=(0.1, 0.6),
            max_per_image=max(1, mix.max_per_image),
            weights=weights,
            required=("low_resolution",),
            required_severity=(0.55, 0.9),
        ),
    }


def identity_blocks(cfg: SyntheticConfig) -> dict[str, range]:
    """Disjoint global identity ranges of the splits."""
    sizes = [
        ("train", cfg.train_identities),
        ("verification", cfg.verification_identities),
        ("ijb", cfg.ijb_identities),
        ("tinyface", cfg.tinyface_identities),
        ("distractor", cfg.tinyface_distractors),
    ]
    out, start = {}, 0
    for name, n in sizes:
        out[name] = range(start, start + n)
        start += n
    return out


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
    """Pool-worker initializer: a worker must not outlive the process that started it.

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
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        return list(tqdm(pool.map(work, specs, chunksize=chunk), **bar))


# --------------------------------------------------------------------------- split layouts
def train_specs(cfg: SyntheticConfig) -> list[ImageSpec]:
    ids = identity_blocks(cfg)["train"]
    return [ImageSpec("train", i, k, "train") for i in ids for k in range(cfg.train_images_per_identity)]


def verification_pairs(
    identities: Sequence[int], n_pairs: int, rng: np.random.Generator, *, hard_fraction: float = 0.5
) -> list[tuple[int, int, bool]]:
    """``(identity_a, identity_b, issame)`` for ``n_pairs`` pairs in 10 folds, each half genuine then half impostor.

    Genuine pairs cycle through a shuffled identity list (balanced use); impostor pairs take the
    next identity of another shuffled cycle and pair it with a family member (``hard_fraction``,
    when the family has another member in ``identities``) or a uniformly random other identity.
    """
    if n_pairs <= 0 or n_pairs % 20:
        raise ValueError(
            f"data.synthetic.verification_pairs must be a positive multiple of 20 "
            f"(10 folds, each half genuine and half impostor), got {n_pairs}"
        )
    ids = np.asarray(list(identities), dtype=np.int64)
    if len(ids) < 2:
        raise ValueError(f"data.synthetic.verification_identities must be >= 2 for impostor pairs, got {len(ids)}")
    families: dict[int, list[int]] = {}
    for i in ids.tolist():
        families.setdefault(i // FAMILY_SIZE, []).append(i)

    def cycle() -> Iterable[int]:
        while True:
            yield from rng.permutation(ids).tolist()

    gen_pos, gen_neg = cycle(), cycle()
    per_fold = n_pairs // 10
    pairs: list[tuple[int, int, bool]] = []
    for _ in range(10):
        for _ in range(per_fold // 2):
            a = next(gen_pos)
            pairs.append((a, a, True))
        for _ in range(per_fold // 2):
            a = next(gen_neg)
            mates = [m for m in families[a // FAMILY_SIZE] if m != a]
            if mates and rng.random() < hard_fraction:
                b = int(rng.choice(mates))
            else:
                b = int(rng.choice(ids[ids != a]))
            pairs.append((a, b, False))
    return pairs


def verification_specs(cfg: SyntheticConfig, seed: int, name: str) -> tuple[list[ImageSpec], np.ndarray, list[int]]:
    """Image specs (2 per pair, pair i = images 2i, 2i+1), issame flags and per-image identities of bin ``name``."""
    ids = identity_blocks(cfg)["verification"]
    pairs = verification_pairs(ids, cfg.verification_pairs, rng_for(seed, name, "pairs"))
    counter: dict[int, int] = {}
    specs, identities = [], []
    for a, b, _ in pairs:
        for ident in (a, b):
            k = counter.get(ident, 0)
            counter[ident] = k + 1
            specs.append(ImageSpec(name, ident, k, name, occlusion=(name != "hq")))
            identities.append(ident)
    return specs, np.array([same for _, _, same in pairs], dtype=bool), identities


@dataclass
class IJBLayout:
    specs: list[ImageSpec]
    faces: pd.DataFrame  # image, tid, mid, identity (score and landmarks added after rendering)
    pairs: pd.DataFrame  # tid1, tid2, label


def ijb_layout(cfg: SyntheticConfig, seed: int) -> IJBLayout:
    """Templates, media, images and template pairs of the synthetic IJB set."""
    rng = rng_for(seed, "ijb", "layout")
    rows, specs = [], []
    tid = mid = 0
    template_identity: list[int] = []
    for ident in identity_blocks(cfg)["ijb"]:
        k = 0
        for _ in range(cfg.ijb_templates_per_identity):
            tid += 1
            template_identity.append(ident)
            left = cfg.ijb_images_per_template
            while left > 0:
                mid += 1
                frames = min(left, int(rng.integers(1, 4)))
                for _ in range(frames):
                    specs.append(ImageSpec("ijb", ident, k, "mixed", loose=True, media=mid if frames > 1 else None))
                    rows.append({"image": f"{len(rows) + 1}.jpg", "tid": tid, "mid": mid, "identity": ident})
                    k += 1
                left -= frames
    tids = np.arange(1, tid + 1)
    owner = np.asarray(template_identity)
    t1, t2 = np.triu_indices(len(tids), k=1)
    label = (owner[t1] == owner[t2]).astype(np.int64)
    genuine = np.flatnonzero(label == 1)
    impostor = np.flatnonzero(label == 0)
    if len(impostor) > MAX_IJB_IMPOSTORS:
        impostor = np.sort(rng.choice(impostor, size=MAX_IJB_IMPOSTORS, replace=False))
    keep = np.sort(np.concatenate([genuine, impostor]))
    pairs = pd.DataFrame({"tid1": tids[t1[keep]], "tid2": tids[t2[keep]], "label": label[keep]})
    return IJBLayout(specs=specs, faces=pd.DataFrame(rows), pairs=pairs)


def tinyface_specs(cfg: SyntheticConfig) -> dict[str, list[tuple[str, ImageSpec, int]]]:
    """``{part: [(file name, spec, label)]}`` of the TinyFace-like identification set."""
    blocks = identity_blocks(cfg)
    probe, gallery, distract = [], [], []
    for local, ident in enumerate(blocks["tinyface"]):
        for k in range(TINYFACE_PROBES):
            probe.append((f"{local:04d}_{k}.jpg", ImageSpec("tinyface_probe", ident, k, "tinyface_probe"), local))
        for k in range(TINYFACE_GALLERY):
            gallery.append((f"{local:04d}_{k}.jpg", ImageSpec("tinyface_gallery", ident, k, "mixed"), local))
    for j, ident in enumerate(blocks["distractor"]):
        distract.append((f"distractor_{j:06d}.jpg", ImageSpec("tinyface_distractor", ident, 0, "mixed"), -1))
    return {"Probe": probe, "Gallery_Match": gallery, "Gallery_Distractor": distract}


# --------------------------------------------------------------------------- writing
def _write_train(out: Path, images: list[SyntheticImage], specs: list[ImageSpec], first_id: int) -> dict:
    labels = [s.identity - first_id for s in specs]
    info = write_recordio(out / "train.rec", ((im.jpeg, lab) for im, lab in zip(images, labels)), with_header=True)
    meta = pd.DataFrame(
        [{"index": i, "label": lab, "identity": s.identity, "image": s.image, **im.meta()} for i, (im, s, lab) in enumerate(zip(images, specs, labels))]
    )
    write_parquet(out / "train_meta.parquet", meta)
    return {"images": info["num_images"], "classes": info["num_classes"], "gt_quality_mean": float(meta["gt_quality"].mean()),
            "degraded_share": float((meta["degradations"] != "").mean())}


def _write_bin(out: Path, name: str, images: list[SyntheticImage], issame: np.ndarray, identities: list[int]) -> dict:
    (out / "verification").mkdir(parents=True, exist_ok=True)
    write_bin(out / "verification" / f"{name}.bin", [im.jpeg for im in images], issame)
    meta = pd.DataFrame(
        [{"index": i, "pair": i // 2, "issame": bool(issame[i // 2]), "identity": ident, **im.meta()} for i, (im, ident) in enumerate(zip(images, identities))]
    )
    write_parquet(out / "verification" / f"{name}_meta.parquet", meta)
    return {"pairs": int(len(issame)), "genuine": int(issame.sum()), "images": len(images), "gt_quality_mean": float(meta["gt_quality"].mean())}


def _write_ijb(out: Path, layout: IJBLayout, images: list[SyntheticImage], seed: int) -> dict:
    root = out / "ijb" / IJB_NAME
    crops = root / "loose_crop"
    crops.mkdir(parents=True, exist_ok=True)
    rng = rng_for(seed, "ijb", "detector_score")
    faces = layout.faces.copy()
    for name, im in zip(faces["image"], images):
        (crops / name).write_bytes(im.jpeg)
    q = np.array([im.gt_quality for im in images])
    faces["landmarks"] = [im.landmarks.reshape(-1).astype(np.float64) for im in images]
    faces["score"] = np.clip(0.55 + 0.45 * q + rng.normal(0, 0.03, len(q)), 0.3, 1.0).round(6)
    write_ijb_meta(root, IJB_NAME, faces[["image", "tid", "mid", "landmarks", "score"]], layout.pairs)
    meta = pd.DataFrame(
        [{"index": i, "image": r.image, "tid": r.tid, "mid": r.mid, "identity": r.identity, "width": im.size[0], "height": im.size[1], **im.meta()}
         for i, (r, im) in enumerate(zip(layout.faces.itertuples(index=False), images))]
    )
    write_parquet(root / "meta.parquet", meta)
    return {
        "faces": len(faces),
        "templates": int(faces["tid"].nunique()),
        "media": int(faces["mid"].nunique()),
        "pairs": int(len(layout.pairs)),
        "genuine": int(layout.pairs["label"].sum()),
    }


def _write_tinyface(out: Path, parts: dict[str, list[tuple[str, ImageSpec, int]]], images: dict[str, list[SyntheticImage]]) -> dict:
    root = out / "tinyface"
    rows = []
    for part, entries in parts.items():
        folder = root / part
        folder.mkdir(parents=True, exist_ok=True)
        # positions = order of the sorted file names (the reader's order)
        order = sorted(range(len(entries)), key=lambda i: entries[i][0])
        for pos, i in enumerate(order):
            fname, spec, label = entries[i]
            im = images[part][i]
            (folder / fname).write_bytes(im.jpeg)
            rows.append({"part": part, "index": pos, "file": f"{part}/{fname}", "label": label, "identity": spec.identity, **im.meta()})
    write_parquet(root / "meta.parquet", pd.DataFrame(rows))
    return {part: len(entries) for part, entries in parts.items()}


def write_synthetic(out_dir: str | Path, cfg: SyntheticConfig, seed: int, *, workers: int = 1, progress: bool = True) -> dict:
    """Generate the whole synthetic set into ``out_dir`` (the prepared-data layout) and ``samples.png``.

    Returns a summary: counts per split and the identity blocks. ``out_dir`` should be a fresh
    (temporary) directory; :func:`marginlab.data.prepare.prepare_data` renames it into place.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks = identity_blocks(cfg)

    # one job list for every split, so a process pool is started once
    jobs: list[tuple[str, ImageSpec]] = []
    tr_specs = train_specs(cfg)
    jobs += [("train", s) for s in tr_specs]
    bins = {}
    for name in VERIFICATION_BINS:
        specs, issame, idents = verification_specs(cfg, seed, name)
        bins[name] = (specs, issame, idents)
        jobs += [(name, s) for s in specs]
    ijb = ijb_layout(cfg, seed)
    jobs += [("ijb", s) for s in ijb.specs]
    tiny = tinyface_specs(cfg)
    for part, entries in tiny.items():
        jobs += [(f"tinyface:{part}", s) for _, s, _ in entries]

    rendered = generate_images(seed, [s for _, s in jobs], cfg, workers=workers, progress=progress, desc="synthetic faces")
    by_split: dict[str, list[SyntheticImage]] = {}
    for (split, _), im in zip(jobs, rendered):
        by_split.setdefault(split, []).append(im)

    summary: dict = {"identity_blocks": {k: [v.start, v.stop] for k, v in blocks.items()}}
    summary["train"] = _write_train(out, by_split["train"], tr_specs, blocks["train"].start)
    summary["verification"] = {name: _write_bin(out, name, by_split[name], bins[name][1], bins[name][2]) for name in VERIFICATION_BINS}
    summary["ijb"] = {IJB_NAME: _write_ijb(out, ijb, by_split["ijb"], seed)}
    summary["tinyface"] = _write_tinyface(out, tiny, {p: by_split.get(f"tinyface:{p}", []) for p in tiny})
    render_samples_png(out / "samples.png", by_split["train"], tr_specs)
    return summary


# --------------------------------------------------------------------------- samples figure
_QUALITY_BINS = ((1.0, 1.0, "clean (q = 1)"), (0.8, 1.0, "0.8 ≤ q < 1"), (0.6, 0.8, "0.6 ≤ q < 0.8"),
                 (0.4, 0.6, "0.4 ≤ q < 0.6"), (0.2, 0.4, "0.2 ≤ q < 0.4"), (0.0, 0.2, "q < 0.2"))


def _spread(items: list, n: int) -> list:
    """``n`` items evenly spaced over ``items`` (all of them when there are fewer)."""
    if len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def render_samples_png(path: str | Path, images: Sequence[SyntheticImage], specs: Sequence[ImageSpec], *, n_identities: int = 6, per_row: int = 8) -> None:
    """``samples.png``: clean, unoccluded images of the first identities (one row each), then one
    row per ground-truth quality bin with images spread over the whole set."""
    ids = sorted({s.identity for s in specs})[:n_identities]
    rows: list[tuple[str, list[np.ndarray]]] = []
    for ident in ids:
        chosen = [im for im, s in zip(images, specs) if s.identity == ident and im.gt_quality == 1.0 and not im.occlusion]
        rows.append((f"identity {ident}", [decode_image(im.jpeg) for im in chosen[:per_row]]))
    for lo, hi, label in _QUALITY_BINS:
        sel = [im for im in images if (im.gt_quality == 1.0 if lo == hi == 1.0 else lo <= im.gt_quality < hi)]
        rows.append((label, [decode_image(im.jpeg) for im in _spread(sel, per_row)]))
    write_image_grid(path, rows, title="Synthetic faces: by identity (clean) and by ground-truth quality q", per_row=per_row,
                     cell=images[0].size[1] if images else 112)
