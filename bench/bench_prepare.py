"""Prepare-stage ingest of a real RecordIO: what decoding every record at prepare costs (issue 11 §3, §10).

Writes two RecordIOs of ``--images`` smooth random JPEG faces, one at 112×112 (the prepared size: every
record is decoded and checked, then the files are hard-linked) and one at 250×250 (every record is
decoded, centre-cropped/resized to 112 and the RecordIO rewritten), and times ``run_prepare`` on each,
side by side in one run, ``--rounds`` times alternately. Prints records/s and the projection for
MS1MV2 (5.8M records) on one core.

    python bench/bench_prepare.py [--images 5000] [--rounds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from marginlab.core.config import validate_params
from marginlab.data.formats import write_recordio
from marginlab.data.prepare import run_prepare

MS1MV2_RECORDS = 5_822_653


def smooth_jpegs(n: int, size: int, classes: int = 100, seed: int = 0):
    """``n`` (JPEG bytes, label) of blurred noise at ``size``×``size``, labels sorted."""
    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, classes, n))
    for i in range(n):
        img = cv2.GaussianBlur(rng.normal(128, 60, (size, size, 3)).astype(np.float32), (0, 0), 3)
        ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        yield buf.tobytes(), int(labels[i])


def time_prepare(rec: Path, out: Path) -> tuple[float, dict]:
    params = validate_params({"data": {"source": "recordio", "train_rec": str(rec), "image_size": 112}})
    t0 = time.perf_counter()
    manifest = run_prepare(params, out, progress=False)
    return time.perf_counter() - t0, manifest["counts"]["train_ingest"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    print(f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", file=sys.stderr)
    results: dict[str, list[float]] = {"112 (link)": [], "250 (rewrite)": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        recs = {}
        for label, size in (("112 (link)", 112), ("250 (rewrite)", 250)):
            recs[label] = root / f"raw{size}" / "train.rec"
            write_recordio(recs[label], smooth_jpegs(args.images, size), with_header=True)
        for r in range(args.rounds):
            for label, rec in recs.items():
                seconds, ingest = time_prepare(rec, root / f"out-{r}-{label[:3]}")
                results[label].append(seconds)
                print(f"round {r}: {label:14s} {seconds:6.2f} s  {args.images / seconds:7.0f} rec/s  "
                      f"ingest={ingest['ingest']} resized={ingest['resized']}", file=sys.stderr)
    summary = {}
    for label, secs in results.items():
        best = min(secs)
        per_record_ms = 1000 * best / args.images
        summary[label] = {"seconds": secs, "records_per_s": args.images / best, "ms_per_record": per_record_ms,
                          "ms1mv2_minutes_one_core": MS1MV2_RECORDS * per_record_ms / 1000 / 60}
        print(f"{label:14s} best {best:6.2f} s = {per_record_ms:.3f} ms/record; MS1MV2 on one core "
              f"≈ {summary[label]['ms1mv2_minutes_one_core']:.0f} min")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
