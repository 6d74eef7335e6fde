"""The prepare stage: build the prepared-data directory from ``params.data``.

Layout of ``<out_dir>`` (the cross-module contract)::

    train.rec, train.idx          InsightFace RecordIO (JPEG payloads)
    train_meta.parquet            index (reader position), label [, synthetic ground truth]
    verification/<name>.bin       verification pairs [, <name>_meta.parquet for synthetic]
    ijb/<name>/                   IJB meta layout (meta/*.txt, loose_crop/) [, meta.parquet]
    tinyface/                     identification set (synthetic only) [, meta.parquet]
    samples.png                   grid of samples (by identity; synthetic also by quality)
    manifest.json                 counts, sources, sha256 of every file, channel order, ...

Sources (``data.source``):

* ``synthetic``: :func:`marginlab.data.synthetic.write_synthetic`.
* ``recordio``: ``data.train_rec`` and the ``.idx`` beside it are hard-linked (copied across file
  systems) to ``train.rec/.idx``; ``train_meta.parquet`` comes from the reader's labels. With
  ``data.skip_corrupt`` every record is read and decoded first, and if any is bad the RecordIO
  is rewritten without it (classes left empty are dropped, labels renumbered contiguously).
* ``folders``: identity folders converted by :func:`marginlab.data.formats.folders_to_recordio`.

In every case each ``data.val_bins`` file is checked with ``read_bin`` (every image decoded) and
linked to ``verification/<stem>.bin`` (with ``skip_corrupt``, pairs with an undecodable image are
dropped and the file rewritten), and each ``data.ijb`` entry gets its three meta files copied to
``ijb/<name>/meta/`` and ``ijb/<name>/image_dir.json`` naming ``image_dir`` (IJB-C is hundreds of
thousands of crops, so they are referenced, not copied: relative when inside the project, so a moved
checkout still finds them; see :mod:`marginlab.data.ijb`), checked with ``read_ijb`` and for the
existence of every listed image. No symlinks: DVC neither hashes nor restores them in an output.

Everything is written into a temporary sibling directory that replaces ``out_dir`` only when
complete (:func:`marginlab.io.atomic_dir`). ``manifest.json`` lists the sha256 of every regular
file written (a symlink, should one appear, is listed under ``links`` and not hashed).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from marginlab.config import Params
from marginlab.io import atomic_dir, write_json, write_parquet

__all__ = ["NORMALISATION", "prepare_data", "sha256_file", "hash_tree", "link_or_copy"]

#: Model-input normalisation used downstream (``marginlab.data.datasets.to_model_input``).
NORMALISATION = "(x / 255 - 0.5) / 0.5"
MANIFEST_VERSION = 1
_HASH_CHUNK = 1 << 20


# --------------------------------------------------------------------------- files
def sha256_file(path: str | Path, *, progress: Optional[tqdm] = None) -> str:
    """Streamed sha256 of a file (1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return h.hexdigest()


def hash_tree(root: str | Path, *, exclude: tuple[str, ...] = (), progress: bool = True) -> tuple[dict[str, dict], list[dict]]:
    """``({relative path: {"sha256", "bytes"}}, [symlinks])`` for every regular file under ``root``.

    Symlinks (to files or directories) are not followed: they are returned as
    ``{"path", "target"}`` entries instead.
    """
    root = Path(root)
    files: list[Path] = []
    links: list[dict] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for name in sorted(dirnames):
            if (d / name).is_symlink():
                links.append({"path": (d / name).relative_to(root).as_posix(), "target": os.readlink(d / name)})
        for name in filenames:
            p = d / name
            rel = p.relative_to(root).as_posix()
            if rel in exclude:
                continue
            if p.is_symlink():
                links.append({"path": rel, "target": os.readlink(p)})
            else:
                files.append(p)
    files.sort()
    total = sum(p.stat().st_size for p in files)
    out: dict[str, dict] = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc="sha256", disable=not progress) as bar:
        for p in files:
            out[p.relative_to(root).as_posix()] = {"sha256": sha256_file(p, progress=bar), "bytes": p.stat().st_size}
    return out, sorted(links, key=lambda e: e["path"])


def link_or_copy(src: str | Path, dst: str | Path) -> str:
    """Hard-link ``src`` to ``dst`` (same file system), else copy it. Returns ``"hardlink"`` or ``"copy"``."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"


def _resolve(path: str | Path, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _require_file(path: Path, key: str) -> None:
    from marginlab.data.errors import MissingFileError

    if not path.is_file():
        raise MissingFileError(f"{key}: file {path} not found")


# --------------------------------------------------------------------------- train set ingest
def _train_meta_from_reader(out: Path, reader: Any) -> pd.DataFrame:
    labels = np.asarray(reader.labels, dtype=np.int64)
    meta = pd.DataFrame({"index": np.arange(len(labels), dtype=np.int64), "label": labels})
    write_parquet(out / "train_meta.parquet", meta)
    return meta


def _rewrite_recordio(reader: Any, dst: Path, progress: bool) -> dict:
    """Write the readable records of ``reader`` to ``dst`` with contiguous labels."""
    from marginlab.data.formats import write_recordio

    labels = np.asarray(reader.labels, dtype=np.int64)
    kept = np.unique(labels)
    remap = {int(c): i for i, c in enumerate(kept.tolist())}
    sorted_labels = bool(np.all(np.diff(labels) >= 0))

    def samples():
        for i in range(len(reader)):
            data, label = reader[i]
            yield data, remap[int(label)] if sorted_labels else int(label)

    info = write_recordio(dst, samples(), with_header=sorted_labels, progress=progress, total=len(reader))
    return {**info, "dropped_classes": [int(c) for c in np.setdiff1d(np.arange(int(labels.max()) + 1), kept)] if sorted_labels else []}


def _ingest_recordio(out: Path, rec: Path, skip_corrupt: bool, progress: bool) -> dict:
    from marginlab.data.formats import open_recordio
    from marginlab.data.recordio import idx_path_for

    _require_file(rec, "data.train_rec")
    idx = idx_path_for(rec)
    _require_file(idx, "data.train_rec (.idx beside the .rec)")
    reader = open_recordio(rec, skip_corrupt=skip_corrupt)
    if skip_corrupt:
        reader.validate(decode=True, progress=progress)
    skipped = [{"source": str(rec), "key": int(k), "reason": r} for k, r in reader.skipped]
    if skipped:
        info = _rewrite_recordio(reader, out / "train.rec", progress)
        how = "rewritten"
    else:
        how = link_or_copy(rec, out / "train.rec")
        link_or_copy(idx, out / "train.idx")
        info = {"num_images": len(reader), "num_classes": int(reader.num_classes)}
    reader.close()
    final = open_recordio(out / "train.rec")
    meta = _train_meta_from_reader(out, final)
    final.close()
    return {
        "images": int(len(meta)),
        "classes": int(meta["label"].max()) + 1 if len(meta) else 0,
        "ingest": how,
        "skipped": skipped,
        "dropped_classes": info.get("dropped_classes", []),
    }


def _ingest_folders(out: Path, root: Path, skip_corrupt: bool, progress: bool) -> dict:
    from marginlab.data.errors import MissingFileError
    from marginlab.data.formats import folders_to_recordio, open_recordio

    if not root.is_dir():
        raise MissingFileError(f"data.train_folders: directory {root} not found")
    info = folders_to_recordio(root, out / "train.rec", skip_corrupt=skip_corrupt, progress=progress)
    reader = open_recordio(out / "train.rec")
    meta = _train_meta_from_reader(out, reader)
    reader.close()
    pd.DataFrame({"label": np.arange(len(info["class_names"])), "class_name": info["class_names"]}).pipe(
        lambda f: write_parquet(out / "train_classes.parquet", f)
    )
    return {
        "images": int(len(meta)),
        "classes": int(info["num_classes"]),
        "ingest": "folders_to_recordio",
        "reencoded": int(info.get("reencoded", 0)),
        "skipped": [{"source": str(p), "reason": r} for p, r in info.get("skipped", [])],
        "dropped_classes": list(info.get("dropped_classes", [])),
    }


# --------------------------------------------------------------------------- evaluation sets
def _ingest_bin(out: Path, src: Path, skip_corrupt: bool) -> tuple[str, dict]:
    from marginlab.data.errors import CorruptImageError, DataFormatError
    from marginlab.data.formats import decode_image, read_bin, read_bin_encoded, write_bin

    _require_file(src, "data.val_bins")
    name = src.stem
    dst = out / "verification" / f"{name}.bin"
    if dst.exists():
        raise DataFormatError(f"data.val_bins: two files are named {name}.bin; their stems must differ (second: {src})")
    skipped: list[dict] = []
    if not skip_corrupt:
        _, issame = read_bin(src)  # decodes every image: raises CorruptImageError naming file and position
        how = link_or_copy(src, dst)
    else:
        encoded, issame = read_bin_encoded(src)
        bad_pairs = set()
        for i, data in enumerate(encoded):
            try:
                decode_image(data, source=f"{src} (image {i})")
            except CorruptImageError as exc:
                bad_pairs.add(i // 2)
                skipped.append({"source": str(src), "image": i, "pair": i // 2, "reason": str(exc)})
        if bad_pairs:
            keep = [p for p in range(len(issame)) if p not in bad_pairs]
            if not keep:
                raise DataFormatError(f"{src}: every pair has an undecodable image; nothing left to evaluate")
            write_bin(dst, [encoded[2 * p + j] for p in keep for j in (0, 1)], issame[keep])
            issame = issame[keep]
            how = "rewritten"
        else:
            how = link_or_copy(src, dst)
    return name, {"source": str(src), "pairs": int(len(issame)), "genuine": int(np.sum(issame)), "ingest": how, "skipped": skipped}


def _ingest_ijb(out: Path, entry: Any, base: Path, progress: bool) -> dict:
    from marginlab.data.errors import IJBFormatError, MissingFileError
    from marginlab.data.formats import ijb_meta_paths, read_ijb
    from marginlab.data.ijb import IMAGE_DIR_FILE, write_image_dir_ref

    meta_dir = _resolve(entry.meta_dir, base)
    image_dir = _resolve(entry.image_dir, base).resolve()
    if not image_dir.is_dir():
        raise MissingFileError(f"data.ijb[{entry.name}].image_dir: directory {image_dir} not found")
    root = out / "ijb" / entry.name
    if root.exists():
        raise IJBFormatError(f"data.ijb: two entries are named {entry.name!r}; names must be unique")
    for key, dst in ijb_meta_paths(root, entry.name).items():
        src = meta_dir / dst.name
        if not src.is_file():
            raise MissingFileError(f"data.ijb[{entry.name}].meta_dir: {src} not found (expected {entry.name}_{key}.txt)")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    write_image_dir_ref(root, image_dir, base)
    ijb = read_ijb(root, entry.name)
    crops = ijb.image_dir
    missing = [im for im in tqdm(ijb.faces["image"].tolist(), desc=f"check {entry.name} crops", unit="img", disable=not progress)
               if not (crops / im).is_file()]
    if missing:
        raise MissingFileError(
            f"data.ijb[{entry.name}]: {len(missing)} of {len(ijb.faces)} images listed in the meta files are missing "
            f"under {image_dir} (first: {missing[0]})"
        )
    return {
        "source": {"meta_dir": str(meta_dir), "image_dir": str(image_dir)},
        "faces": int(len(ijb.faces)),
        "templates": int(ijb.faces["tid"].nunique()),
        "media": int(ijb.faces["mid"].nunique()),
        "pairs": int(len(ijb.pairs)),
        "genuine": int(ijb.pairs["label"].sum()),
        "loose_crop": f"referenced by {IMAGE_DIR_FILE} (not copied)",
    }


def _real_samples_png(out: Path, per_row: int = 8, n_identities: int = 8) -> None:
    """``samples.png`` of a real training set: the first images of the first identities."""
    from marginlab.data.formats import decode_image, open_recordio
    from marginlab.data.sample_grid import write_image_grid

    reader = open_recordio(out / "train.rec")
    labels = np.asarray(reader.labels)
    rows = []
    for c in np.unique(labels)[:n_identities].tolist():
        pos = np.flatnonzero(labels == c)[:per_row]
        rows.append((f"class {c}", [decode_image(reader[int(i)][0], source=f"train.rec position {int(i)}") for i in pos]))
    reader.close()
    write_image_grid(out / "samples.png", rows, title="Training set: first images of the first identities", per_row=per_row)


# --------------------------------------------------------------------------- entry point
def prepare_data(
    params: Params,
    out_dir: str | Path,
    *,
    base_dir: str | Path | None = None,
    workers: int = 0,
    progress: bool = True,
) -> dict:
    """Build ``out_dir`` from ``params.data`` (see the module docstring) and return the manifest.

    ``base_dir`` resolves relative input paths (default: the current directory); ``workers`` is the
    number of generator processes for synthetic data (0 = one per core, at most 8; the images do not
    depend on it).
    """
    from marginlab.data.synthetic import quality_policies, resolve_workers, write_synthetic

    t0 = time.perf_counter()
    data = params.data
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    out_dir = Path(out_dir)
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "dataset": data.name,
        "source": data.source,
        "channel_order": data.channel_order,
        "decoded_channel_order": "RGB",
        "normalisation": NORMALISATION,
        "skip_corrupt": data.skip_corrupt,
    }
    with atomic_dir(out_dir) as tmp:
        skipped: list[dict] = []
        if data.source == "synthetic":
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
            counts = {
                "train_images": summary["train"]["images"],
                "train_classes": summary["train"]["classes"],
                "train_degraded_share": summary["train"]["degraded_share"],
                "verification": summary["verification"],
                "ijb": summary["ijb"],
                "tinyface": summary["tinyface"],
            }
        else:
            if data.source == "recordio":
                src = _resolve(data.train_rec, base)  # type: ignore[arg-type]
                train = _ingest_recordio(tmp, src, data.skip_corrupt, progress)
            else:
                src = _resolve(data.train_folders, base)  # type: ignore[arg-type]
                train = _ingest_folders(tmp, src, data.skip_corrupt, progress)
            skipped += train.pop("skipped")
            manifest["sources"] = {"train": str(src)}
            counts = {"train_images": train["images"], "train_classes": train["classes"], "train_ingest": train, "verification": {}, "ijb": {}}
        for b in data.val_bins:
            name, info = _ingest_bin(tmp, _resolve(b, base), data.skip_corrupt)
            skipped += info.pop("skipped")
            counts.setdefault("verification", {})[name] = info
        for entry in data.ijb:
            counts.setdefault("ijb", {})[entry.name] = _ingest_ijb(tmp, entry, base, progress)
        if data.source != "synthetic":
            _real_samples_png(tmp)
        manifest["sources"]["val_bins"] = [str(_resolve(b, base)) for b in data.val_bins]
        manifest["sources"]["ijb"] = [e.model_dump(mode="json") for e in data.ijb]
        manifest["counts"] = counts
        manifest["skipped"] = skipped
        files, links = hash_tree(tmp, exclude=("manifest.json",), progress=progress)
        manifest["files"] = files
        manifest["links"] = links
        manifest["environment"] = {"python": platform.python_version(), "numpy": np.__version__, "opencv": _cv2_version()}
        manifest["wall_time_s"] = round(time.perf_counter() - t0, 3)
        write_json(tmp / "manifest.json", manifest)
        _apply_umask(tmp)
    return manifest


def _apply_umask(root: Path) -> None:
    """Give the output the permissions of ordinary files (temporary files are created 0600/0700)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                os.chmod(p, 0o777 & ~mask)
        for name in filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                os.chmod(p, 0o666 & ~mask)


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
    import cv2

    return str(cv2.__version__)
