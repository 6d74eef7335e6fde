"""data.align: detect (issue #15): detection quality, speed, and training on the aligned set.

Three parts (all by default; pick with --parts):

* ``quality``: MTCNN on ``--scenes`` synthetic scenes per seed (:func:`marginlab.data.scenes.render_scene`:
  the generator's faces on a 256x256 cluttered canvas, face 70-150 px wide, rotation U(-30°, 30°),
  random shift). Detection rate at ``min_score`` 0.9 (overall, per identity family of 4, per |rotation|
  band), and the aligned-landmark error at 112x112 of the kept faces (mean, p95) beside the floor a
  perfect detector would leave (:mod:`marginlab.data.align.evaluation`).
* ``speed``: images/s of detection + alignment, end to end as prepare runs it (read, sha256, decode,
  downscale, detect, decode again, warp, JPEG encode) over a folder of JPEG photos of one size, for
  several photo sizes, torch threads and batch sizes; plus the detector alone (decoded images in memory).
  On CUDA too with --device cuda (the GPU path).
* ``accuracy``: :func:`marginlab.align_study.compare_alignment`: the same model trained on detected-and-
  aligned scenes vs on the originally aligned crops of the same faces (and on the unaligned scenes, the
  negative control), all scored on the same originally aligned pairs of held-out identities.

    python bench/bench_align.py [--parts quality speed accuracy] [--json bench/out/align.json]

The CPU may be shared: the ``load`` line (1-minute load average before and after) says how much.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from marginlab.core.config import Params
from marginlab.data.align import Detector, choose_face
from marginlab.data.align.evaluation import aligned_landmark_error, alignment_floor
from marginlab.data.formats import encode_jpeg
from marginlab.data.prepare.ingest_aligned import ingest_aligned
from marginlab.data.scenes import render_scene


def quality(seeds: list[int], scenes: int) -> dict:
    torch.set_num_threads(1)
    det = Detector(device="cpu")
    found, errs, floors = [], [], []
    per_family: dict[str, list[bool]] = collections.defaultdict(list)
    per_rot: dict[str, list[bool]] = collections.defaultdict(list)
    t = 0.0
    for seed in seeds:
        for i in range(scenes):
            ident, k = i // 2, i % 2
            s = render_scene(seed, ident, k, canvas=(256, 256), face_px=(70, 150))
            t0 = time.perf_counter()
            d = det.detect([s.image])[0]
            t += time.perf_counter() - t0
            c = choose_face(d, s.image.shape[:2], min_score=0.9, multiple_faces="largest", no_face="skip")
            ok = c.face >= 0
            found.append(ok)
            per_family[f"{seed}/{ident // 4}"].append(ok)
            band = "0-10" if abs(s.rotation) < 10 else "10-20" if abs(s.rotation) < 20 else "20-30"
            per_rot[band].append(ok)
            if ok:
                errs.append(aligned_landmark_error(d.landmarks[c.face], s.landmarks))
                floors.append(alignment_floor(s.landmarks))
    fam_rates = {k: float(np.mean(v)) for k, v in per_family.items()}
    worst = sorted(fam_rates.items(), key=lambda kv: kv[1])[:3]
    return {
        "scenes": len(found), "seeds": seeds, "canvas": [256, 256], "face_px": [70, 150], "max_rotation": 30,
        "detection_rate": float(np.mean(found)),
        "rate_by_rotation": {k: [float(np.mean(v)), len(v)] for k, v in sorted(per_rot.items())},
        "families": len(fam_rates), "families_below_0.75": sum(r < 0.75 for r in fam_rates.values()),
        "worst_families": worst,
        "landmark_error_px112": {"mean": float(np.mean(errs)), "p95": float(np.percentile(errs, 95)), "max": float(np.max(errs))},
        "floor_px112": {"mean": float(np.mean(floors)), "p95": float(np.percentile(floors, 95))},
        "detector_only_s_per_image": t / len(found),
    }


def _photo_folder(root: Path, size: tuple[int, int], n: int) -> Path:
    """``n`` JPEG photos of ``size`` (W, H): 256x256 scenes drawn at the photo's own size."""
    for i in range(n):
        w, h = size
        s = render_scene(11, i % 20, i, canvas=(min(w, 640), min(h, 480)), face_px=(80, 160))
        img = s.image if (w, h) == s.image.shape[1::-1] else cv2.resize(s.image, (w, h), interpolation=cv2.INTER_LINEAR)
        p = root / f"id{i % 4}" / f"{i:03d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(encode_jpeg(img, quality=90))
    return root


def speed(sizes: list[tuple[int, int]], n: int, threads: list[int], batches: list[int], device: str) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            folder = _photo_folder(Path(tmp) / f"photos_{size[0]}x{size[1]}", size, n)
            for th in threads:
                for bs in batches:
                    torch.set_num_threads(th)
                    params = Params.model_validate({"data": {
                        "source": "folders", "name": "bench", "train_folders": str(folder), "align": "detect",
                        "alignment": {"cache_dir": str(Path(tmp) / f"cache_{size[0]}_{th}_{bs}"), "batch_size": bs,
                                      "device": device, "threads": th, "chunk_size": 256}}})
                    out = Path(tmp) / f"out_{size[0]}_{th}_{bs}"
                    out.mkdir()
                    t0 = time.perf_counter()
                    res = ingest_aligned(out, params, Path(tmp), progress=False)
                    wall = time.perf_counter() - t0
                    rows.append({"photo": f"{size[0]}x{size[1]}", "images": n, "threads": th, "batch_size": bs, "device": device,
                                 "end_to_end_img_s": round(n / wall, 2), "detect_s": res["alignment"]["cache"]["detect_s"],
                                 "detect_img_s": round(n / max(res["alignment"]["cache"]["detect_s"], 1e-9), 2),
                                 "kept": res["train"]["images"]})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["quality", "speed", "accuracy"], choices=["quality", "speed", "accuracy"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--scenes", type=int, default=128, help="scenes per seed (2 per identity)")
    ap.add_argument("--speed-images", type=int, default=48)
    ap.add_argument("--sizes", nargs="+", default=["256x256", "640x480", "4000x3000"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--accuracy-seeds", nargs="+", type=int, default=[7, 8])
    ap.add_argument("--json", type=Path, default=Path("bench/out/align.json"))
    args = ap.parse_args(argv)
    result: dict = {"load_before": os.getloadavg()[0], "cpus": os.cpu_count(), "torch": torch.__version__}
    if "quality" in args.parts:
        result["quality"] = quality(args.seeds, args.scenes)
        print(json.dumps(result["quality"], indent=1), flush=True)
    if "speed" in args.parts:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
        result["speed"] = speed(sizes, args.speed_images, args.threads, args.batch_sizes, args.device)  # type: ignore[arg-type]
    if "accuracy" in args.parts:
        from marginlab.align_study import compare_alignment

        result["accuracy"] = []
        with tempfile.TemporaryDirectory() as tmp:
            old = os.getcwd()
            os.chdir(tmp)  # dvclive looks for a repository from the working directory
            try:
                for seed in args.accuracy_seeds:
                    r = compare_alignment(Path(tmp) / f"s{seed}", identities=24, per_identity=12, val_identities=16,
                                          val_pairs=200, epochs=8, seed=seed, unaligned_control=True)
                    r["detected"].pop("alignment", None)
                    r["seed"] = seed
                    result["accuracy"].append(r)
                    print(json.dumps(r, indent=1, default=str), flush=True)
            finally:
                os.chdir(old)
    result["load_after"] = os.getloadavg()[0]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {args.json}; load {result['load_before']:.2f} -> {result['load_after']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
