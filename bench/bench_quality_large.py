"""Quality stage on one large photo: time and peak memory with and without ``quality.max_side``.

One synthetic 6000x4000 RGB photo (smooth shapes, edges and sensor-like noise) is written as a JPEG
into a temporary directory. For each setting of ``--max-side`` (default: ``none`` and ``512``) a
fresh Python process creates the scorer, warms it up on a 112x112 face, then scores the photo through
:func:`marginlab.quality.score_items` exactly as the quality stage does (lazy loader that decodes the
JPEG, downscaling on load, chunk part file). Each child reports the wall time of that call and its
peak resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``: high-water mark of the whole process)
before and after it; separate processes keep one setting's high-water mark from hiding the other's.
The settings run side by side in one invocation (``--rounds`` alternates them).

    python bench/bench_quality_large.py [--size 6000x4000] [--max-side none 512] [--rounds 1] [--threads 1]
                                        [--json bench/out/quality_large.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def synthetic_photo(height: int, width: int, seed: int = 0):
    """A natural-looking RGB uint8 photo: upsampled smooth noise, a few flat shapes, fine noise."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    small = cv2.GaussianBlur(rng.normal(0, 1, (height // 10, width // 10, 3)).astype(np.float32), (0, 0), 4)
    small = (small - small.min()) / (np.ptp(small) + 1e-6) * 150 + 50
    for _ in range(12):
        y0, x0 = rng.integers(0, small.shape[0] - 20), rng.integers(0, small.shape[1] - 20)
        small[y0:y0 + rng.integers(10, small.shape[0] // 3), x0:x0 + rng.integers(10, small.shape[1] // 3)] += \
            rng.uniform(-40, 40, 3)
    photo = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    photo += rng.normal(0, 4, photo.shape).astype(np.float32)
    return np.clip(photo, 0, 255).astype(np.uint8)


def child(args: argparse.Namespace) -> None:
    """Score ``args.photo`` once with ``args.child`` as max_side; print one JSON line."""
    import resource
    import time

    import torch

    from marginlab.data.formats import decode_image
    from marginlab.quality import BrisqueScorer, score_items

    def peak_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    torch.set_num_threads(args.threads)
    max_side = None if args.child == "none" else int(args.child)
    scorer = BrisqueScorer(device="cpu")
    warm = torch.rand(1, 3, 112, 112)
    scorer(warm)
    before = peak_mib()
    photo = Path(args.photo)
    items = [("photo", 0, lambda: decode_image(photo.read_bytes(), source=str(photo)))]
    with tempfile.TemporaryDirectory() as parts:
        start = time.perf_counter()
        result = score_items(items, scorer, parts, chunk_size=1, batch_size=1, progress=False, max_side=max_side)
        elapsed = time.perf_counter() - start
        brisque = float(result.table()["brisque"].iloc[0])
    print(json.dumps({"max_side": max_side, "seconds": round(elapsed, 2), "peak_rss_mib_before": round(before),
                      "peak_rss_mib": round(peak_mib()), "downscaled": result.downscaled, "brisque": brisque}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="6000x4000", help="WIDTHxHEIGHT of the synthetic photo")
    parser.add_argument("--max-side", nargs="+", default=["none", "512"], help="settings to compare ('none' = off)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per child (1: robust on a shared CPU)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "quality_large.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--photo", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from marginlab.data.formats import encode_jpeg

    width, height = (int(v) for v in args.size.lower().split("x"))
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; photo {width}x{height}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        photo.write_bytes(encode_jpeg(synthetic_photo(height, width), quality=92))
        for round_ in range(args.rounds):
            for setting in args.max_side:
                cmd = [sys.executable, __file__, "--child", setting, "--photo", str(photo),
                       "--threads", str(args.threads)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
                row = {"round": round_, **json.loads(out)}
                rows.append(row)
                print(f"max_side {str(row['max_side']):>5}: {row['seconds']:7.2f} s, peak RSS {row['peak_rss_mib']:6d} MiB "
                      f"(after warm-up {row['peak_rss_mib_before']} MiB), BRISQUE {row['brisque']:.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"size": [width, height], "threads": args.threads, "load_average_before": load,
                                     "load_average_after": os.getloadavg(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
