"""Writing the synthetic set into the prepared-data layout, in the real formats, and ``samples.png``.

:func:`write_synthetic` lays out every split (:mod:`.layout`), renders all images in one pool
(:mod:`.generator`) and writes train RecordIO, verification ``.bin``, IJB meta + loose crops and the
TinyFace folders with their ground-truth tables (package docstring: :mod:`marginlab.data.synthetic`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from marginlab.core.config import SyntheticConfig
from marginlab.data.formats import decode_image, write_bin, write_ijb_meta, write_recordio
from marginlab.data.sample_grid import write_image_grid
from marginlab.data.synthetic.faces import rng_for
from marginlab.data.synthetic.generator import SyntheticImage, generate_images
from marginlab.data.synthetic.layout import (
    IJB_NAME,
    VERIFICATION_BINS,
    IJBLayout,
    ImageSpec,
    identity_blocks,
    ijb_layout,
    tinyface_specs,
    train_specs,
    verification_specs,
)
from marginlab.core.io import write_parquet
from marginlab.core.layouts import PreparedLayout

__all__ = ["render_samples_png", "write_synthetic"]


# --------------------------------------------------------------------------- writing
def _write_train(out: Path, images: list[SyntheticImage], specs: list[ImageSpec], first_id: int) -> dict:
    labels = [s.identity - first_id for s in specs]
    info = write_recordio(PreparedLayout(out).train_rec, ((im.jpeg, lab) for im, lab in zip(images, labels)), with_header=True)
    meta = pd.DataFrame(
        [{"index": i, "label": lab, "identity": s.identity, "image": s.image, **im.meta()} for i, (im, s, lab) in enumerate(zip(images, specs, labels))]
    )
    write_parquet(PreparedLayout(out).train_meta, meta)
    return {"images": info["num_images"], "classes": info["num_classes"], "gt_quality_mean": float(meta["gt_quality"].mean()),
            "degraded_share": float((meta["degradations"] != "").mean())}


def _write_bin(out: Path, name: str, images: list[SyntheticImage], issame: np.ndarray, identities: list[int]) -> dict:
    prepared = PreparedLayout(out)
    prepared.verification.mkdir(parents=True, exist_ok=True)
    write_bin(prepared.verification_bin(name), [im.jpeg for im in images], issame)
    meta = pd.DataFrame(
        [{"index": i, "pair": i // 2, "issame": bool(issame[i // 2]), "identity": ident, **im.meta()} for i, (im, ident) in enumerate(zip(images, identities))]
    )
    write_parquet(prepared.verification_meta(name), meta)
    return {"pairs": int(len(issame)), "genuine": int(issame.sum()), "images": len(images), "gt_quality_mean": float(meta["gt_quality"].mean())}


def _write_ijb(out: Path, layout: IJBLayout, images: list[SyntheticImage], seed: int) -> dict:
    root = PreparedLayout(out).ijb_set(IJB_NAME)
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
    write_parquet(PreparedLayout.set_meta(root), meta)
    return {
        "faces": len(faces),
        "templates": int(faces["tid"].nunique()),
        "media": int(faces["mid"].nunique()),
        "pairs": int(len(layout.pairs)),
        "genuine": int(layout.pairs["label"].sum()),
    }


def _write_tinyface(out: Path, parts: dict[str, list[tuple[str, ImageSpec, int]]], images: dict[str, list[SyntheticImage]]) -> dict:
    root = PreparedLayout(out).tinyface
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
    write_parquet(PreparedLayout.set_meta(root), pd.DataFrame(rows))
    return {part: len(entries) for part, entries in parts.items()}


def write_synthetic(out_dir: str | Path, cfg: SyntheticConfig, seed: int, *, workers: int = 1, progress: bool = True) -> dict:
    """Generate the whole synthetic set into ``out_dir`` (the prepared-data layout) and ``samples.png``.

    Returns a summary: counts per split and the identity blocks. ``out_dir`` should be a fresh
    (temporary) directory; :func:`marginlab.data.prepare.run_prepare` renames it into place.
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
    render_samples_png(PreparedLayout(out).samples_png, by_split["train"], tr_specs)
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
