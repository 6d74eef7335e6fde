"""Verification pairs from identity folders of your own photos: a ``.bin`` for ``data.val_bins``.

    python -m marginlab.data.pairs FOLDER --out pairs.bin [--pairs 600] [--seed 0]

``FOLDER`` holds one sub-folder per identity (the ``data.train_folders`` layout; use identities that are
not in the training folders).  Pairs alternate genuine (two images of one identity, drawn among
identities with at least two images) and impostor (images of two different identities), drawn
without repeating a pair; the images go into the ``.bin`` byte for byte, as they are (raw photos
of any size), so ``data.align: detect`` detects and aligns them at prepare like the training photos,
and a pair loses both images when one has no face.  Prints the counts; exits 2 with a message on a
folder that cannot give the pairs asked for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from marginlab.data.formats import DataFormatError, write_bin
from marginlab.data.formats.folders import list_image_folder

__all__ = ["folder_pairs", "write_folder_pairs"]


def folder_pairs(labels: np.ndarray, n_pairs: int, seed: int = 0) -> list[tuple[int, int, bool]]:
    """``n_pairs`` (i, j, same) index pairs over images with identity ``labels``; genuine first, then
    alternating.  Raises ValueError when the images cannot give that many distinct pairs."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    multi = [c for c, idx in by_class.items() if len(idx) >= 2]
    n_gen, n_imp = (n_pairs + 1) // 2, n_pairs // 2
    max_gen = sum(len(by_class[c]) * (len(by_class[c]) - 1) // 2 for c in multi)
    n = len(labels)
    max_imp = (n * (n - 1) // 2) - sum(len(i) * (len(i) - 1) // 2 for i in by_class.values())
    if n_gen > max_gen or n_imp > max_imp:
        raise ValueError(f"{n_pairs} pairs need {n_gen} genuine and {n_imp} impostor pairs; the folder gives at most "
                         f"{max_gen} genuine (identities with 2+ images: {len(multi)}) and {max_imp} impostor pairs")
    seen: set[tuple[int, int]] = set()
    genuine, impostor = [], []
    while len(genuine) < n_gen:
        c = multi[int(rng.integers(len(multi)))]
        i, j = sorted(rng.choice(by_class[c], 2, replace=False).tolist())
        if (i, j) not in seen:
            seen.add((i, j))
            genuine.append((i, j, True))
    while len(impostor) < n_imp:
        i, j = sorted(rng.choice(n, 2, replace=False).tolist())
        if labels[i] != labels[j] and (i, j) not in seen:
            seen.add((i, j))
            impostor.append((i, j, False))
    out = []
    for k in range(max(n_gen, n_imp)):
        out += genuine[k : k + 1] + impostor[k : k + 1]
    return out


def write_folder_pairs(folder: str | Path, out: str | Path, n_pairs: int = 600, seed: int = 0) -> dict:
    paths, labels, classes = list_image_folder(folder)
    pairs = folder_pairs(labels, n_pairs, seed)
    images = [paths[k].read_bytes() for i, j, _ in pairs for k in (i, j)]
    write_bin(out, images, [same for _, _, same in pairs])
    return {"pairs": len(pairs), "genuine": sum(s for _, _, s in pairs), "identities": len(classes), "images": len(paths)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="identity folders (one sub-folder per identity)")
    ap.add_argument("--out", type=Path, required=True, help="the .bin to write")
    ap.add_argument("--pairs", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        info = write_folder_pairs(args.folder, args.out, args.pairs, args.seed)
    except (ValueError, DataFormatError, FileNotFoundError) as exc:  # DataFormatError names the folder
        print(f"error: {args.folder}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {info['pairs']} pairs ({info['genuine']} genuine) from {info['images']} images of {info['identities']} identities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
