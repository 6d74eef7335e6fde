"""BRISQUE throughput on 112x112 faces: one image per call vs batched, and the whole default dataset.

Measures, in one process and interleaved over ``--rounds`` (the CPU is shared: compare ratios from
one run and read the ``load`` line):

* ``per_image``: :class:`marginlab.quality.BrisqueScorer` called with one image at a time (the
  scorer is created once; nothing is re-created per call);
* ``batch_<B>``: the same images stacked into batches of B (``--batch-sizes``, default 32 64 256);
* ``pyiqa_per_image`` / ``pyiqa_batch_64``: ``pyiqa.create_metric('brisque')`` itself, for reference
  (its float32 SVR), and ``pyiqa_new_metric_per_image``: the naive loop that creates the metric for
  every image (``--no-pyiqa`` skips these);

and projects the time for the default synthetic dataset and for MS1MV2 (5.8 M images) from the
best batched rate. ``--full-dataset`` also generates the default synthetic prepared set in a temporary
directory and times the real quality stage on it with the default params (decode + group + score +
parts + summary).

Images: synthetic training faces (``marginlab.data.synthetic``, default degradation mix, decoded
from their JPEG) or, if that module is missing, smoothed noise with edges.

    python bench/bench_quality.py [--images 512] [--threads 1 2] [--device cpu|cuda] [--full-dataset]
                                  [--json bench/out/quality.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MS1MV2_IMAGES = 5_822_653


def face_images(n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 112, 112, 3) RGB uint8 faces and a description of where they come from."""
    try:
        from marginlab.core.config import SyntheticConfig
        from marginlab.data.formats import decode_image
        from marginlab.data.synthetic import generate_images, train_specs
    except ImportError:
        import cv2

        rng = np.random.default_rng(seed)
        out = np.empty((n, 112, 112, 3), np.uint8)
        for i in range(n):
            base = cv2.GaussianBlur(rng.normal(0, 1, (112, 112, 3)).astype(np.float32), (0, 0), rng.uniform(1.5, 6))
            base = (base - base.min()) / (np.ptp(base) + 1e-6) * 160 + 40
            y0, x0 = rng.integers(0, 56, 2)
            base[y0:y0 + 40, x0:x0 + 30] += rng.uniform(-50, 50, 3)
            out[i] = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
        return out, "smoothed noise with edges (marginlab.data.synthetic not available)"
    cfg = SyntheticConfig()
    specs = train_specs(cfg)
    step = max(1, len(specs) // n)
    chosen = specs[::step][:n]
    images = generate_images(seed, chosen, cfg, workers=0, progress=False)
    return np.stack([decode_image(im.jpeg) for im in images]), "marginlab.data.synthetic train faces (JPEG, default degradation mix)"


def timed(fn, n_images: int) -> float:
    start = time.perf_counter()
    fn()
    return n_images / (time.perf_counter() - start)


def default_dataset_size() -> dict[str, int]:
    """Image counts of the default synthetic dataset (from its generator when available)."""
    from marginlab.core.config import SyntheticConfig

    cfg = SyntheticConfig()
    sizes = {"train": cfg.train_identities * cfg.train_images_per_identity}
    try:
        from marginlab.data.synthetic import VERIFICATION_BINS, ijb_layout, tinyface_specs, verification_specs

        sizes["verification"] = sum(len(verification_specs(cfg, 42, name)[0]) for name in VERIFICATION_BINS)
        sizes["ijb"] = len(ijb_layout(cfg, 42).specs)
        sizes["tinyface"] = sum(len(v) for v in tinyface_specs(cfg).values())
    except ImportError:
        pass
    return sizes


def run_full_dataset(device: str) -> dict:
    """Generate the default synthetic set and time the quality stage on it."""
    from marginlab.core.config import SyntheticConfig, validate_params
    from marginlab.data.synthetic import write_synthetic
    from marginlab.quality.scorer import default_model_path
    from marginlab.quality.stage import run_quality

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        t0 = time.perf_counter()
        write_synthetic(Path(tmp) / "prepared", SyntheticConfig(), 42, workers=1, progress=False)
        generation = time.perf_counter() - t0
        params = validate_params({"data": {"prepared_dir": str(Path(tmp) / "prepared")},
                                  "quality": {"model_path": str(default_model_path()), "output_dir": str(Path(tmp) / "quality"),
                                              "device": device}})
        t0 = time.perf_counter()
        summary = run_quality(params, progress=False)
        seconds = time.perf_counter() - t0
    return {"images": summary["num_images"], "stage_seconds": round(seconds, 1),
            "images_per_s": round(summary["num_images"] / seconds, 1), "generation_seconds": round(generation, 1),
            "per_split": {k: v["count"] for k, v in summary["splits"].items() if k != "all"}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="batched modes score this many images per round")
    parser.add_argument("--per-image", type=int, default=96, help="images scored one per call per round")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 256])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[2],
                        help="torch intra-op thread counts to compare (CPU; each round runs all)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-pyiqa", action="store_true", help="skip the pyiqa create_metric reference")
    parser.add_argument("--full-dataset", action="store_true", help="also time the quality stage on the default dataset")
    parser.add_argument("--json", type=Path, default=Path("bench/out/quality.json"))
    args = parser.parse_args(argv)

    from marginlab.quality import BrisqueScorer
    from marginlab.quality.scorer import uint8_to_tensor

    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; torch {torch.__version__}, "
          f"device {args.device}", flush=True)
    images, origin = face_images(max(args.images, args.per_image))
    x = uint8_to_tensor(images).to(args.device)
    print(f"{len(images)} images 112x112 ({origin})", flush=True)

    scorer = BrisqueScorer(device=args.device, batch_size=max(args.batch_sizes))
    modes = {"per_image": (args.per_image, lambda: [scorer(x[i:i + 1]) for i in range(args.per_image)])}
    for bs in args.batch_sizes:
        def batched(bs=bs):
            scorer.batch_size = bs
            return scorer(x[:args.images])
        modes[f"batch_{bs}"] = (args.images, batched)
    if not args.no_pyiqa:
        import pyiqa

        path = str(scorer.model_path)
        metric = pyiqa.create_metric("brisque", device=args.device, pretrained_model_path=path)

        def pyiqa_batched():
            with torch.inference_mode():
                return [metric(x[i:i + 64]) for i in range(0, args.images, 64)]

        def pyiqa_single():
            with torch.inference_mode():
                return [metric(x[i:i + 1]) for i in range(args.per_image)]

        n_new = min(16, args.per_image)

        def pyiqa_new_metric_each_call():  # the naive loop: a metric created per image
            return [pyiqa.create_metric("brisque", device=args.device, pretrained_model_path=path)(x[i:i + 1])
                    for i in range(n_new)]

        modes["pyiqa_per_image"] = (args.per_image, pyiqa_single)
        modes["pyiqa_new_metric_per_image"] = (n_new, pyiqa_new_metric_each_call)
        modes["pyiqa_batch_64"] = (args.images, pyiqa_batched)

    with torch.inference_mode():  # warm-up: allocator, oneDNN primitives for each shape, lazy imports
        for bs in [1, *args.batch_sizes]:
            scorer.batch_size = bs
            scorer(x[:bs])
            if not args.no_pyiqa and bs in (1, 64):
                metric(x[:bs])
    rates: dict[int, dict[str, list[float]]] = {t: {k: [] for k in modes} for t in args.threads}
    for r in range(args.rounds):
        for t in args.threads:
            torch.set_num_threads(t)
            for name, (n, fn) in modes.items():
                rates[t][name].append(timed(fn, n))
                if args.device == "cuda":
                    torch.cuda.synchronize()
            print(f"round {r + 1}, {t} thread(s): " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates[t].items()),
                  flush=True)

    sizes = default_dataset_size()
    n_default = sum(sizes.values())
    batch_names = [f"batch_{bs}" for bs in args.batch_sizes]
    result: dict = {"load_average_before": load, "load_average_after": os.getloadavg(), "device": args.device,
                    "images": origin, "default_dataset_images": sizes, "threads": {}}
    for t in args.threads:
        best = {k: max(v) for k, v in rates[t].items()}
        best_batch = max(batch_names, key=lambda k: best[k])
        speedup = best[best_batch] / best["per_image"]
        result["threads"][t] = {
            "images_per_s": {k: [round(v, 1) for v in vs] for k, vs in rates[t].items()},
            "best_images_per_s": {k: round(v, 1) for k, v in best.items()},
            "best_batch": best_batch,
            "speedup_batched_vs_per_image": round(speedup, 2),
            "speedup_by_batch_size": {k: round(best[k] / best["per_image"], 2) for k in batch_names},
            "projected_default_dataset_s": round(n_default / best[best_batch], 1),
            "projected_ms1mv2_hours": round(MS1MV2_IMAGES / best[best_batch] / 3600, 2),
        }
        print(f"{t} thread(s): best batched ({best_batch}) {best[best_batch]:.0f}/s vs per image "
              f"{best['per_image']:.0f}/s = {speedup:.2f}x; default dataset ({n_default} images) "
              f"~{n_default / best[best_batch]:.0f} s of scoring; MS1MV2 ({MS1MV2_IMAGES:,}) "
              f"~{MS1MV2_IMAGES / best[best_batch] / 3600:.1f} h", flush=True)
    if args.full_dataset:  # with the thread count that gave the best batched rate in this run
        best_t = max(args.threads, key=lambda t: max(max(rates[t][k]) for k in batch_names))
        torch.set_num_threads(best_t)
        result["full_dataset"] = {"threads": best_t, **run_full_dataset(args.device)}
        print(f"quality stage on the default dataset: {json.dumps(result['full_dataset'])}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
