"""Ingest with ``data.align: detect``: raw photos detected, aligned and written like aligned crops.

Every ``data.train_folders``, ``data.val_bins`` and ``data.tinyface`` image is detected with MTCNN (one
pass over all of them, cached and resumable: :mod:`marginlab.data.align.cache`), the policy of
``data.alignment`` picks a face or none (:mod:`marginlab.data.align.policy`), and each kept image is
warped to the ArcFace template at ``data.image_size`` and stored as JPEG quality 95 in ``train.rec``
(classes left without an image are dropped and the rest renumbered, as for corrupt images) or in
``verification/<stem>.bin`` (a pair loses both images when one is dropped) or in ``tinyface/<part>/``
(a probe whose identity lost every gallery match is dropped too: :mod:`.ingest_tinyface`).

``alignment.parquet`` has one row per input image: ``set`` (``train``, ``val:<stem>`` or ``tinyface:<part>``,
where ``class`` is the identity, -1 for a distractor), ``source``
(the file; for a ``.bin`` the file and ``image`` = position), ``sha256``, ``height``/``width``,
``status`` (``ok``, ``center_crop``, ``no_face``, ``low_score``, ``corrupt``), ``kept``,
``faces_found``, ``faces_above_min_score``, ``face`` (the chosen detection, -1 for none),
``score``, ``box`` (x0, y0, x1, y1) and ``landmarks`` (x1, y1, ..., x5, y5), in the source image's
pixels; ``label`` (training class after renumbering, -1 when dropped).  ``manifest["alignment"]``
sums it up per set and status.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from marginlab.core.config import Params
from marginlab.data.align.cache import CachedDetection, decoded_size_from_header, detect_all
from marginlab.data.align.detector import Detections, Detector
from marginlab.data.align.policy import STATUSES, aligned_crop, choose_face
from marginlab.data.formats import (
    CorruptImageError,
    DataFormatError,
    EmptyFolderError,
    MissingFileError,
    VerificationBinError,
    decode_image_checked,
    encode_jpeg,
    read_bin_encoded,
    write_bin,
    write_recordio,
)
from marginlab.data.formats.errors import ImageTooLargeError
from marginlab.data.formats.folders import list_image_folder
from marginlab.data.formats.image_header import check_image_size
from marginlab.data.prepare.files import require_file, resolve_input, write_train_meta
from marginlab.data.prepare.ingest_tinyface import list_tinyface, write_tinyface
from marginlab.core.device import resolve_device
from marginlab.core.io import write_parquet
from marginlab.core.layouts import PreparedLayout

__all__ = ["ingest_aligned", "make_detector"]

JPEG_QUALITY = 95


def make_detector(params: Params) -> Detector:
    """The MTCNN detector of ``data.alignment`` (device ``auto``: CUDA when present)."""
    import torch

    cfg = params.data.alignment
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    return Detector(
        device=resolve_device(cfg.device),
        min_face_size=cfg.min_face_size,
        min_face_fraction=cfg.min_face_fraction,
        thresholds=cfg.thresholds,
        max_side=cfg.max_side,
        batch_size=cfg.batch_size,
    )


def ingest_aligned(out: Path, params: Params, base: Path, progress: bool) -> dict:
    """Detect, align and write the training folders, verification bins and TinyFace set into ``out``.

    Returns ``{"train": ..., "verification": {stem: ...}, "tinyface": ... or None, "alignment": summary, "skipped": [...],
    "warnings": [...]}``; raises :class:`DataFormatError` naming the params key and file for an
    undecodable image (unless ``data.skip_corrupt``) or when nothing is left to write.
    """
    t0 = time.perf_counter()
    data = params.data
    cfg = data.alignment
    root = resolve_input(data.train_folders, base)  # type: ignore[arg-type]
    if not root.is_dir():
        raise MissingFileError(f"data.train_folders: directory {root} not found")
    paths, labels, class_names = list_image_folder(root)
    max_pixels = int(data.max_image_pixels)
    too_large: dict[str, CachedDetection] = {}
    sizes: dict[str, Optional[tuple[int, int]]] = {}  # what the cache checks its entries against

    def hashed(image: bytes, label: str) -> str:
        """The sha256 of ``image``, and its decoded size from the header while the bytes are in memory; one
        whose header exceeds data.max_image_pixels is refused here, before the detection cache, so that the
        refusal is never cached (a larger limit must admit it later)."""
        sha = _sha(image)
        try:
            check_image_size(image, source=label, max_pixels=max_pixels)
        except ImageTooLargeError as exc:
            too_large[sha] = CachedDetection(0, 0, str(exc), Detections.empty())
        except CorruptImageError:
            pass  # undecodable for another reason: the cache's decode records it
        else:
            sizes[sha] = decoded_size_from_header(image)
        return sha

    rows: list[dict[str, Any]] = []  # one per input image, in input order
    readers: dict[str, Callable[[], tuple[bytes, str]]] = {}
    for path, label in tqdm(list(zip(paths, labels.tolist())), desc="hash photos", unit="img", disable=not progress):
        sha = hashed(_read(path), str(path))
        rows.append({"set": "train", "source": str(path), "image": -1, "sha256": sha, "class": int(label)})
        readers.setdefault(sha, lambda p=path: (_read(p), str(p)))
    bins: dict[str, tuple[Path, list[bytes], np.ndarray]] = {}
    for b in data.val_bins:
        src = resolve_input(b, base)
        require_file(src, "data.val_bins")
        if src.stem in bins:
            raise DataFormatError(f"data.val_bins: two files are named {src.stem}.bin; their stems must differ (second: {src})")
        try:
            encoded, issame = read_bin_encoded(src)
        except VerificationBinError as exc:
            raise VerificationBinError(f"data.val_bins: {exc}") from None
        bins[src.stem] = (src, encoded, issame)
        for i, enc in enumerate(encoded):
            sha = hashed(enc, f"{src} (image {i})")
            rows.append({"set": f"val:{src.stem}", "source": str(src), "image": i, "sha256": sha, "class": -1})
            readers.setdefault(sha, lambda e=enc, s=src, i=i: (bytes(e), f"{s} (image {i})"))

    tiny_src = resolve_input(data.tinyface, base) if data.tinyface is not None else None
    tiny_images = list_tinyface(tiny_src) if tiny_src is not None else []
    for im in tqdm(tiny_images, desc="hash tinyface", unit="img", disable=not progress):
        sha = hashed(_read(im.path), str(im.path))
        rows.append({"set": f"tinyface:{im.part}", "source": str(im.path), "image": -1, "sha256": sha, "class": im.label})
        readers.setdefault(sha, lambda p=im.path: (_read(p), str(p)))

    cache_dir = resolve_input(cfg.cache_dir, base)
    found, stats = detect_all(
        [r["sha256"] for r in rows if r["sha256"] not in too_large], lambda k: readers[k](),
        make_detector=lambda: make_detector(params), cache_dir=cache_dir, chunk_size=cfg.chunk_size, progress=progress,
        max_pixels=max_pixels, sizes=sizes,
    )
    found.update(too_large)
    skipped: list[dict] = []
    warnings: list[dict] = []
    for r in rows:
        _decide(r, found[r["sha256"]], params, skipped)

    def crop(r: dict) -> bytes:
        data_bytes, label = readers[r["sha256"]]()
        image, messages = decode_image_checked(data_bytes, source=label, exif_orientation=True, max_pixels=max_pixels)  # as detected
        warnings.extend({"source": r["source"], **({"image": r["image"]} if r["image"] >= 0 else {}), "message": m} for m in messages)
        lm = None if r["face"] < 0 else np.asarray(r["landmarks"], dtype=np.float64).reshape(5, 2)
        return encode_jpeg(aligned_crop(image, lm, int(data.image_size)), quality=JPEG_QUALITY)

    train = _write_train(out, root, [r for r in rows if r["set"] == "train"], class_names, crop, progress)
    verification = {}
    for stem, (src, encoded, issame) in bins.items():
        verification[stem] = _write_bin(out, src, [r for r in rows if r["set"] == f"val:{stem}"], issame, crop)
        del encoded
    tinyface = None
    if tiny_src is not None:
        tiny_rows = [r for r in rows if r["set"].startswith("tinyface:")]  # in tiny_images order
        written = write_tinyface(out, tiny_images, lambda i: crop(tiny_rows[i]) if tiny_rows[i]["kept"] else None, progress)
        tinyface = {"source": str(tiny_src), **written, "ingest": "align_detect", "statuses": _counts(tiny_rows)}
    frame = _frame(rows)
    write_parquet(PreparedLayout(out).alignment, frame)
    summary = summarise(frame)
    summary.update({
        "mode": "detect",
        "settings": cfg.model_dump(mode="json"),
        "cache": {**stats, "dir": str(cache_dir)},
        "image_size": int(data.image_size),
        "template": "ArcFace 5-point, scaled by image_size/112 (marginlab.data.formats.five_point_alignment.arcface_template)",
        "wall_time_s": round(time.perf_counter() - t0, 3),
    })
    return {"train": train, "verification": verification, "tinyface": tinyface, "alignment": summary, "skipped": skipped,
            "warnings": warnings}


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CorruptImageError(f"{path}: cannot read ({exc})") from None


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(bytes(data)).hexdigest()


def _decide(r: dict, cached: CachedDetection, params: Params, skipped: list[dict]) -> None:
    """Fill the detection and policy columns of row ``r``."""
    cfg = params.data.alignment
    r.update({"height": cached.height, "width": cached.width, "faces_found": len(cached.detections),
              "faces_above_min_score": 0, "face": -1, "score": np.nan, "box": None, "landmarks": None})
    key = {"train": "data.train_folders", "val": "data.val_bins", "tinyface": "data.tinyface"}[r["set"].split(":")[0]]
    if cached.error is not None:
        if not params.data.skip_corrupt:  # the cached message names the first file with these bytes
            where = "" if r["source"] in cached.error else f"{r['source']}: "
            raise CorruptImageError(f"{key}: {where}{cached.error}")
        r.update(status="corrupt", kept=False)
        skipped.append({"source": r["source"], **({"image": r["image"]} if r["image"] >= 0 else {}), "reason": cached.error})
        return
    det = cached.detections
    choice = choose_face(det, (cached.height, cached.width), min_score=cfg.min_score,
                         multiple_faces=cfg.multiple_faces, no_face=cfg.no_face)
    r.update(status=choice.status, kept=choice.kept, faces_above_min_score=choice.faces_above_min_score, face=choice.face)
    if choice.face >= 0:
        r.update(score=float(det.scores[choice.face]), box=det.boxes[choice.face].tolist(),
                 landmarks=det.landmarks[choice.face].reshape(-1).tolist())
    elif len(det):  # the best rejected detection, for the record
        best = int(np.argmax(det.scores))
        r.update(score=float(det.scores[best]))


def _write_train(out: Path, root: Path, rows: list[dict], class_names: list[str], crop: Callable[[dict], bytes], progress: bool) -> dict:
    kept_names: list[str] = []

    def samples():
        for r in tqdm(rows, desc=f"align {root.name} -> train.rec", unit="img", disable=not progress):
            r["label"] = -1
            if not r["kept"]:
                continue
            name = class_names[r["class"]]
            if not kept_names or kept_names[-1] != name:
                kept_names.append(name)
            r["label"] = len(kept_names) - 1
            yield crop(r), r["label"]

    if not any(r["kept"] for r in rows):
        raise EmptyFolderError(
            f"data.train_folders: {root}: no face kept in any of its {len(rows)} images "
            f"(statuses: {_counts(rows)}); see data.alignment (min_score, no_face)"
        )
    info = write_recordio(PreparedLayout(out).train_rec, samples(), with_header=True)
    labels = np.asarray([r["label"] for r in rows if r["label"] >= 0], dtype=np.int64)
    write_train_meta(out, labels)
    write_parquet(PreparedLayout(out).train_classes, pd.DataFrame({"label": np.arange(len(kept_names)), "class_name": kept_names}))
    return {
        "images": int(info["num_images"]),
        "classes": int(info["num_classes"]),
        "ingest": "align_detect",
        "input_images": len(rows),
        "statuses": _counts(rows),
        "dropped_classes": [c for c in class_names if c not in set(kept_names)],
    }


def _write_bin(out: Path, src: Path, rows: list[dict], issame: np.ndarray, crop: Callable[[dict], bytes]) -> dict:
    keep = [p for p in range(len(issame)) if rows[2 * p]["kept"] and rows[2 * p + 1]["kept"]]
    if not keep:
        raise DataFormatError(f"data.val_bins: {src}: no pair has a face kept in both images (statuses: {_counts(rows)})")
    write_bin(PreparedLayout(out).verification_bin(src.stem), [crop(rows[2 * p + j]) for p in keep for j in (0, 1)], issame[keep])
    return {
        "source": str(src),
        "pairs": len(keep),
        "input_pairs": int(len(issame)),
        "genuine": int(np.sum(issame[keep])),
        "ingest": "align_detect",
        "statuses": _counts(rows),
    }


def _counts(rows: list[dict]) -> dict[str, int]:
    out = {s: 0 for s in STATUSES}
    for r in rows:
        out[r["status"]] += 1
    return out


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if "label" not in frame:
        frame["label"] = -1
    frame["label"] = frame["label"].fillna(-1).astype(np.int64)
    cols = ["set", "source", "image", "sha256", "height", "width", "status", "kept", "faces_found",
            "faces_above_min_score", "face", "score", "box", "landmarks", "class", "label"]
    return frame[cols]


def summarise(frame: pd.DataFrame) -> dict:
    """Counts per set and status, the detection rate and the multi-face count (the manifest entry)."""
    per_set = {}
    for name, part in frame.groupby("set", sort=True):
        decodable = part[part["status"] != "corrupt"]
        per_set[str(name)] = {
            "images": int(len(part)),
            "kept": int(part["kept"].sum()),
            "statuses": {s: int((part["status"] == s).sum()) for s in STATUSES},
            "several_faces": int((decodable["faces_above_min_score"] > 1).sum()),
            "detection_rate": round(float((decodable["faces_above_min_score"] > 0).mean()), 6) if len(decodable) else None,
        }
    decodable = frame[frame["status"] != "corrupt"]
    return {
        "images": int(len(frame)),
        "kept": int(frame["kept"].sum()),
        "detection_rate": round(float((decodable["faces_above_min_score"] > 0).mean()), 6) if len(decodable) else None,
        "per_set": per_set,
        "file": "alignment.parquet",
    }
