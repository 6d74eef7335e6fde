"""data.align: detect on photo-sized images (issue #24 item 5): images/s before and after, same scenes.

Scenes (:func:`marginlab.data.scenes.render_scene`, the renderer of ``bench_align.py`` and the tests)
at photo sizes (default 640x480, 1024x768, 1024x1024, and 2048x1536, which is detected on a 1024x768
copy), encoded as JPEG (quality 90).  Per 10 scenes: 7 with one face whose template width is
U(0.16, 0.6) x the shorter side (the detected box is ~0.65 of that: 0.10-0.39 of the shorter side),
rotation U(-30°, 30°); 2 with a second, smaller face (0.6 x the first, beside it); 1 with no face
(clutter only).  True landmarks of the main face are known.

Timed per image, as ``marginlab embed --align detect`` does it: decode (EXIF orientation applied),
detect (batches of ``data.alignment.batch_size`` photos of one size), choose the face (policy
defaults), warp to the 112x112 template from the full-resolution image.  Two detectors, run
interleaved on the same JPEGs in one process (order alternating between repetitions, so a shared
CPU's load falls on both):

* ``before``: ``min_face_fraction: 0``, the fixed 20-pixel floor: the very call of facenet-pytorch's
  ``detect_face`` made before issue #24 (the old code path);
* ``after``: the ``data.alignment`` defaults (``min_face_fraction`` 0.1).

Quality of each, on the same scenes: kept rate of the face scenes (a face above ``min_score`` kept)
and how many of those are the true face (aligned landmark error < 20 px at 112), landmark error
(mean, p95) of the true faces kept, second faces found (both faces above ``min_score``) on the
two-face scenes, faces kept on the no-face scenes.  Plus the 256x256 scenes of ``bench_align.py
--parts quality`` (384, the "Face detection and alignment" table of bench/RESULTS.md).

    python bench/bench_detect_speed.py [--sizes 640x480 1024x768] [--scenes 60] [--reps 3] [--threads 1 2]

The CPU may be shared: compare the ratios; ``load`` (1-minute load average) is printed per row.
``img_per_cpu_s`` (images per CPU-second of this process) says what one core does when nothing else
runs on it: less disturbed by other jobs than the wall time, exact only with one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from marginlab.core.config import AlignmentConfig
from marginlab.data.align import Detections, Detector, aligned_crop, choose_face
from marginlab.data.align.evaluation import aligned_landmark_error
from marginlab.data.formats import decode_image_checked, encode_jpeg
from marginlab.data.scenes import _clutter, render_scene  # _clutter: the scenes' own background shapes

CFG = AlignmentConfig()
WRONG_FACE_PX = 20.0  # aligned landmark error above which the kept face is not the true one


def detectors() -> dict[str, Detector]:
    common = dict(device="cpu", min_face_size=CFG.min_face_size, thresholds=CFG.thresholds, max_side=CFG.max_side,
                  batch_size=CFG.batch_size)
    return {
        "before": Detector(**common, min_face_fraction=0.0),
        "after": Detector(**common, min_face_fraction=CFG.min_face_fraction),
    }


def photo_scenes(size: tuple[int, int], n: int, seed: int = 24) -> list[dict]:
    """``n`` JPEG scenes of ``size`` (W, H): kind ``one``, ``two`` or ``none`` (see the module docstring)."""
    w, h = size
    short = min(w, h)
    out = []
    for i in range(n):
        kind = ("one",) * 7 + ("two",) * 2 + ("none",)
        k = kind[i % 10]
        if k == "none":
            rng = np.random.default_rng((seed, w, h, i))
            img = np.empty((h, w, 3), np.uint8)
            img[:] = rng.integers(40, 220, 3).astype(np.uint8)
            _clutter(img, rng, 24, np.array([-1e6, -1e6]), 0.0)  # shapes everywhere
            out.append({"kind": k, "jpeg": encode_jpeg(img, quality=90), "landmarks": None})
            continue
        s = render_scene(seed, i, i, canvas=(w, h), face_px=(0.16 * short, 0.6 * short),
                         extra_faces=1 if k == "two" else 0)
        out.append({"kind": k, "jpeg": encode_jpeg(s.image, quality=90), "landmarks": s.landmarks})
    return out


def pipeline(det: Detector, jpegs: list[bytes]) -> tuple[list[Detections], list[int], list]:
    """Decode, detect, choose, warp, as embed does it; returns detections, chosen face and crops."""
    images = [decode_image_checked(j, exif_orientation=True)[0] for j in jpegs]
    dets = det.detect(images)
    chosen, crops = [], []
    for img, d in zip(images, dets):
        c = choose_face(d, img.shape[:2], min_score=CFG.min_score, multiple_faces=CFG.multiple_faces, no_face="skip")
        chosen.append(c.face)
        crops.append(aligned_crop(img, d.landmarks[c.face], 112) if c.kept else None)
    return dets, chosen, crops


def score(scenes: list[dict], dets: list[Detections], chosen: list[int]) -> dict:
    errs, kept, wrong, second, false_keep = [], 0, 0, 0, 0
    faces = [i for i, s in enumerate(scenes) if s["kind"] != "none"]
    for i, s in enumerate(scenes):
        d, c = dets[i], chosen[i]
        if s["kind"] == "none":
            false_keep += c >= 0
            continue
        if s["kind"] == "two":
            second += int((d.scores >= CFG.min_score).sum() >= 2)
        if c < 0:
            continue
        kept += 1
        e = aligned_landmark_error(d.landmarks[c], s["landmarks"])
        if e > WRONG_FACE_PX:
            wrong += 1
        else:
            errs.append(e)
    two = sum(s["kind"] == "two" for s in scenes)
    return {
        "face_scenes": len(faces), "kept_rate": round(kept / len(faces), 4), "kept_true_face": len(errs),
        "kept_wrong_face": wrong,
        "landmark_error_px112": {"mean": round(float(np.mean(errs)), 3), "p95": round(float(np.percentile(errs, 95)), 3)},
        "second_face_found": f"{second}/{two}",
        "no_face_scenes_kept": f"{false_keep}/{len(scenes) - len(faces)}",
    }


def speed_and_quality(sizes: list[tuple[int, int]], n: int, reps: int, threads: list[int]) -> list[dict]:
    dets = detectors()
    rows = []
    for size in sizes:
        scenes = photo_scenes(size, n)
        jpegs = [s["jpeg"] for s in scenes]
        quality = {}
        for name, det in dets.items():  # untimed run: warm-up and the detections scored
            d, c, _ = pipeline(det, jpegs)
            quality[name] = score(scenes, d, c)
        for th in threads:
            torch.set_num_threads(th)
            times: dict[str, list[float]] = {name: [] for name in dets}
            cpu: dict[str, list[float]] = {name: [] for name in dets}
            for rep in range(reps):
                for name in (list(dets) if rep % 2 == 0 else list(dets)[::-1]):
                    t0, c0 = time.perf_counter(), time.process_time()
                    pipeline(dets[name], jpegs)
                    times[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.process_time() - c0)
            img_s = {name: round(n / float(np.median(t)), 2) for name, t in times.items()}
            paired = [b / a for b, a in zip(times["before"], times["after"])]
            rows.append({
                "photo": f"{size[0]}x{size[1]}", "images": n, "threads": th, "reps": reps, "img_s": img_s,
                # images per CPU-second of this process: what one core does when nothing else runs on it
                "img_per_cpu_s": {name: round(n / float(np.median(t)), 2) for name, t in cpu.items()},
                "after_over_before": round(float(np.median(paired)), 2),
                "after_over_before_per_rep": [round(x, 2) for x in paired],
                "pyramid_levels": {name: len(dets[name].pyramid_scales(dets[name].prepare(
                    np.zeros((size[1], size[0], 3), np.uint8))[0].shape)) for name in dets},
                "quality": quality, "load": os.getloadavg()[0],
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def small_scenes(seeds: list[int], per_seed: int) -> dict:
    """Kept rate and landmark error on bench_align.py's 256x256 quality scenes, before and after."""
    torch.set_num_threads(1)
    dets = detectors()
    res = {}
    scenes = [render_scene(seed, i // 2, i % 2, canvas=(256, 256), face_px=(70, 150)) for seed in seeds for i in range(per_seed)]
    for name in ("before", "after"):
        found = [dets[name].detect([s.image])[0] for s in scenes]
        errs = []
        for s, d in zip(scenes, found):
            c = choose_face(d, s.image.shape[:2], min_score=CFG.min_score, multiple_faces="largest", no_face="skip")
            if c.face >= 0:
                errs.append(aligned_landmark_error(d.landmarks[c.face], s.landmarks))
        res[name] = {"scenes": len(scenes), "kept_rate": round(len(errs) / len(scenes), 4),
                     "landmark_error_px112": {"mean": round(float(np.mean(errs)), 3),
                                              "p95": round(float(np.percentile(errs, 95)), 3)}}
    print(json.dumps({"scenes_256": res}), flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["640x480", "1024x768", "1024x1024", "2048x1536"])
    ap.add_argument("--scenes", type=int, default=60, help="scenes per size")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="seeds of the 256x256 scenes (128 each; none: skip them)")
    ap.add_argument("--json", type=Path, default=Path("bench/out/detect_speed.json"))
    args = ap.parse_args(argv)
    result: dict = {"load_before": os.getloadavg()[0], "cpus": os.cpu_count(), "torch": torch.__version__,
                    "settings": {"min_face_size": CFG.min_face_size, "min_face_fraction": CFG.min_face_fraction,
                                 "max_side": CFG.max_side, "batch_size": CFG.batch_size, "min_score": CFG.min_score}}
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    result["photos"] = speed_and_quality(sizes, args.scenes, args.reps, args.threads)  # type: ignore[arg-type]
    if args.seeds:
        result["scenes_256"] = small_scenes(args.seeds, 128)
    result["load_after"] = os.getloadavg()[0]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}; load {result['load_before']:.2f} -> {result['load_after']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
