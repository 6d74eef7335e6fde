"""The prepare driver: :func:`run_prepare` builds the prepared-data directory and its manifest.

It takes the stale-output clean-up and the lock (:mod:`.stale`), writes into a temporary directory
(:func:`marginlab.core.io.atomic_dir`), generates the synthetic set (:mod:`marginlab.data.synthetic`) or
ingests the real training set (:mod:`.ingest_recordio`, :mod:`.ingest_folders`), the verification
``.bin`` files (:mod:`.ingest_bins`) and IJB sets (:mod:`.ingest_ijb`), draws ``samples.png`` and
fills ``manifest.json``.  The layout and the rules are in the package docstring
(:mod:`marginlab.data.prepare`).
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from marginlab.core.config import Params
from marginlab.data.formats import ImagePolicy, decode_image_checked, open_recordio
from marginlab.data.model_input import NORMALISATION
from marginlab.data.prepare.files import apply_umask, hash_tree, resolve_input
from marginlab.data.prepare.ingest_aligned import ingest_aligned
from marginlab.data.prepare.ingest_bins import ingest_bin
from marginlab.data.prepare.ingest_folders import ingest_folders
from marginlab.data.prepare.ingest_ijb import ingest_ijb
from marginlab.data.prepare.ingest_recordio import ingest_recordio
from marginlab.data.prepare.ingest_tinyface import ingest_tinyface
from marginlab.data.prepare.stale import clean_stale_temps, lock_dir
from marginlab.data.prepare.subset import ingest_subset
from marginlab.data.sample_grid import write_image_grid
from marginlab.data.synthetic import quality_policies, resolve_workers, write_synthetic
from marginlab.core.io import atomic_dir, check_replaceable, write_json
from marginlab.core.layouts import PreparedLayout

__all__ = ["MANIFEST_VERSION", "image_policy", "run_prepare"]

MANIFEST_VERSION = 3  # 2: image_policy, warnings, resized counts; 3: alignment


def image_policy(params: Params) -> ImagePolicy:
    """The ingest image policy of ``params.data`` (``image_size``, ``resize``, ``max_image_pixels``; JPEG quality 95)."""
    data = params.data
    return ImagePolicy(size=int(data.image_size), resize=data.resize, jpeg_quality=95, max_pixels=int(data.max_image_pixels))


def run_prepare(
    params: Params,
    out_dir: str | Path,
    *,
    base_dir: str | Path | None = None,
    workers: int = 0,
    progress: bool = True,
) -> dict:
    """Build ``out_dir`` from ``params.data`` (see the package docstring) and return the manifest.

    ``base_dir`` resolves relative input paths (default: the current directory); ``workers`` is the
    number of generator processes for synthetic data (0 = one per core, at most 8; the images do not
    depend on it).  Temporary siblings of ``out_dir`` left by a killed run are removed first.
    """
    t0 = time.perf_counter()
    data = params.data
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    out_dir = Path(out_dir)
    policy = image_policy(params)
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "dataset": data.name,
        "source": data.source,
        "channel_order": data.channel_order,
        "decoded_channel_order": "RGB",
        "normalisation": NORMALISATION,
        "skip_corrupt": data.skip_corrupt,
        "image_policy": {
            **policy.as_json(),
            "applies_to": "train_rec records, train_folders images, val_bins images"
            + ("; synthetic images are drawn at data.synthetic.image_size" if data.source == "synthetic" else ""),
            "ijb": "not resized: loose crops are aligned to 112x112 from their landmarks when read",
        },
        "subset": None,  # data.subset_index: file, sha256 and the selection counts (.subset)
        "alignment": {"mode": data.align},  # data.align detect: counts per set and status (.ingest_aligned)
    }
    check_replaceable(out_dir)  # before touching anything beside it: out_dir must be ours (or empty, or absent)
    clean_stale_temps(out_dir)
    held: list[int] = []
    try:
        with atomic_dir(out_dir) as tmp:
            held.append(lock_dir(tmp))  # held until the output is renamed into place
            _build(tmp, params, base, workers, progress, manifest)
            manifest["wall_time_s"] = round(time.perf_counter() - t0, 3)
            write_json(PreparedLayout(tmp).manifest, manifest)
            apply_umask(tmp)
    finally:
        for fd in held:
            os.close(fd)
    return manifest


def _build(tmp: Path, params: Params, base: Path, workers: int, progress: bool, manifest: dict) -> None:
    """Write every prepared file into ``tmp`` and fill ``manifest`` (all but the wall time)."""
    data = params.data
    policy = image_policy(params)
    skipped: list[dict] = []
    warnings: list[dict] = []
    if data.source == "synthetic":
        counts = _synthetic_train(tmp, params, workers, progress, manifest)
    elif data.align == "detect":  # raw photos: detected and aligned (train folders and val_bins)
        counts = _aligned_real(tmp, params, base, progress, manifest, skipped, warnings)
    else:
        counts = _real_train(tmp, params, base, progress, manifest, skipped, warnings)
    for b in data.val_bins if data.align != "detect" else []:
        name, info = ingest_bin(tmp, resolve_input(b, base), policy, data.skip_corrupt, progress)
        skipped += info.pop("skipped")
        warnings += info.pop("warnings")
        counts.setdefault("verification", {})[name] = info
    for entry in data.ijb:
        counts.setdefault("ijb", {})[entry.name] = ingest_ijb(tmp, entry, base, progress, data.max_image_pixels)
    if data.tinyface is not None and data.align != "detect":  # with detect, ingest_aligned wrote it
        info = ingest_tinyface(tmp, resolve_input(data.tinyface, base), policy, data.skip_corrupt, progress)
        skipped += info.pop("skipped")
        warnings += info.pop("warnings")
        counts["tinyface"] = info
    if data.source != "synthetic":
        _real_samples_png(tmp, cell=policy.size)
    manifest["sources"]["val_bins"] = [str(resolve_input(b, base)) for b in data.val_bins]
    manifest["sources"]["ijb"] = [e.model_dump(mode="json") for e in data.ijb]
    if data.tinyface is not None:
        manifest["sources"]["tinyface"] = str(resolve_input(data.tinyface, base))
    counts["warnings"] = len(warnings)
    manifest["counts"] = counts
    manifest["skipped"] = skipped
    manifest["warnings"] = warnings
    files, links = hash_tree(tmp, exclude=(PreparedLayout(tmp).manifest.name,), progress=progress)
    manifest["files"] = files
    manifest["links"] = links
    manifest["environment"] = {"python": platform.python_version(), "numpy": np.__version__, "opencv": _cv2_version()}


def _synthetic_train(tmp: Path, params: Params, workers: int, progress: bool, manifest: dict) -> dict:
    """Generate the synthetic set into ``tmp``; fills ``manifest["sources"/"generator"]``, returns counts."""
    data = params.data
    n_workers = resolve_workers(workers)
    summary = write_synthetic(tmp, data.synthetic, params.seed, workers=n_workers, progress=progress)
    manifest["sources"] = {"train": "synthetic"}
    manifest["generator"] = {
        "seed": params.seed,
        "synthetic": data.synthetic.model_dump(mode="json"),
        "identity_blocks": summary["identity_blocks"],
        "quality_policies": {k: _policy_json(v) for k, v in quality_policies(data.synthetic).items()},
        "gt_quality": "prod over types t of (1 - severity_t); types exposure, blur, low_resolution, noise, jpeg",
        "workers": n_workers,
    }
    return {
        "train_images": summary["train"]["images"],
        "train_classes": summary["train"]["classes"],
        "train_degraded_share": summary["train"]["degraded_share"],
        "verification": summary["verification"],
        "ijb": summary["ijb"],
        "tinyface": summary["tinyface"],
    }


def _real_train(tmp: Path, params: Params, base: Path, progress: bool, manifest: dict, skipped: list, warnings: list) -> dict:
    """Ingest ``data.train_rec`` or ``data.train_folders`` into ``tmp``; returns counts."""
    data = params.data
    policy = image_policy(params)
    src = resolve_input(data.train_rec if data.source == "recordio" else data.train_folders, base)  # type: ignore[arg-type]
    if data.subset_index is not None:  # the Table 1 subset (.subset), in the official ImageFolder order
        subset_file = resolve_input(data.subset_index, base)
        train, manifest["subset"] = ingest_subset(tmp, data.source, src, subset_file, policy, data.skip_corrupt, progress)
    elif data.source == "recordio":
        train = ingest_recordio(tmp, src, policy, data.skip_corrupt, progress)
    else:
        train = ingest_folders(tmp, src, policy, data.skip_corrupt, progress)
    skipped += train.pop("skipped")
    warnings += train.pop("warnings")
    manifest["sources"] = {"train": str(src)}
    if data.subset_index is not None:
        manifest["sources"]["subset_index"] = str(subset_file)
    return {"train_images": train["images"], "train_classes": train["classes"], "train_ingest": train, "verification": {}, "ijb": {}}


def _aligned_real(tmp: Path, params: Params, base: Path, progress: bool, manifest: dict, skipped: list, warnings: list) -> dict:
    """``data.align: detect``: detect + align ``data.train_folders`` and ``data.val_bins`` (:mod:`.ingest_aligned`)."""
    result = ingest_aligned(tmp, params, base, progress)
    skipped += result["skipped"]
    warnings += result["warnings"]
    manifest["alignment"] = result["alignment"]
    manifest["image_policy"]["applies_to"] = (
        "data.align detect: every train_folders and val_bins image is warped to the ArcFace template at image_size "
        "(alignment.parquet); the resize rule is not used"
    )
    manifest["sources"] = {"train": str(resolve_input(params.data.train_folders, base))}  # type: ignore[arg-type]
    train = result["train"]
    counts = {"train_images": train["images"], "train_classes": train["classes"], "train_ingest": train,
              "verification": result["verification"], "ijb": {}}
    if result.get("tinyface") is not None:
        counts["tinyface"] = result["tinyface"]
    return counts


def _real_samples_png(out: Path, cell: int, per_row: int = 8, n_identities: int = 8) -> None:
    """``samples.png`` of a real training set: the first images of the first identities.

    Read back from the prepared ``train.rec``, whose images all have the policy's size (``cell``).
    """
    def decode(data: bytes, i: int) -> np.ndarray:  # decoder warnings were recorded by the ingest pass
        return decode_image_checked(data, source=f"train.rec position {i}")[0]

    reader = open_recordio(PreparedLayout(out).train_rec)
    labels = np.asarray(reader.labels)
    rows = []
    for c in np.unique(labels)[:n_identities].tolist():
        pos = np.flatnonzero(labels == c)[:per_row]
        rows.append((f"class {c}", [decode(reader[int(i)][0], int(i)) for i in pos]))
    reader.close()
    write_image_grid(PreparedLayout(out).samples_png, rows, title="Training set: first images of the first identities", per_row=per_row, cell=cell)


def _policy_json(p: Any) -> dict:
    return {
        "fraction": p.fraction,
        "severity": list(p.severity),
        "max_per_image": p.max_per_image,
        "weights": dict(p.weights),
        "required": list(p.required),
        "required_severity": list(p.required_severity) if p.required_severity else None,
    }


def _cv2_version() -> str:
    return str(cv2.__version__)
