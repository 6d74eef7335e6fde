"""Benchmark of the evaluation path: embedding throughput and 10-fold accuracy time.

    python bench/bench_evaluate.py [--device auto] [--budget 20] [--skip-ir50] [--out bench/evaluate.json]
    python bench/bench_evaluate.py --sweep [--rounds 4] [--images 3072]   # evaluate.batch_size x channels_last

1. ``embed_images`` throughput (images/s, flip fusion on: two forward passes per image, resizing
   and normalisation included) of the default small model (IR-18 at width 0.25, input 64) and of a
   full IR-50 at 112 (skipped with ``--skip-ir50``), each for about ``--budget`` seconds, on CPU with
   1 and with all intra-op threads side by side (on a shared CPU the thread count matters a lot).
2. ``ten_fold_accuracy`` on 6,000 random 512-D pairs (the LFW size): this implementation (integer
   counts of a thresholds × pairs matrix) against a straightforward per-fold, per-threshold loop in
   the style of the InsightFace code, same run, plus the VAL@FAR=1e-3 extra (4,000 thresholds).

3. ``--sweep`` (only this): ``embed_images`` of params.yaml's model (IR-18 width 0.25 at 48x48, flip on,
   the evaluation stage's call) over ``--images`` 112x112 images for every ``evaluate.batch_size`` in
   ``--batches`` with ``evaluate.channels_last`` off and on; the variants alternate within each of
   ``--rounds`` rounds (order reversed every other round), medians and ratios to batch 256 contiguous
   (the setting before issue #14's last change) are printed, plus the largest difference between the
   variants' embeddings relative to their largest value.

Timings on a shared machine are noisy: the script records ``os.getloadavg()`` and reports ratios
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from marginlab.backbones import build_backbone, count_parameters
from marginlab.core.device import resolve_device
from marginlab.evaluate import accuracy_from_distances, embed_images, pair_distances, ten_fold_accuracy, val_far_from_distances
from marginlab.evaluate.verification import ACCURACY_THRESHOLDS, fold_slices


def embed_throughput(name: str, width: float, input_size: int, device: torch.device, budget_s: float, batch: int) -> dict:
    model = build_backbone(name, embedding_size=512, input_size=input_size, width=width)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(batch, 112, 112, 3), dtype=np.uint8)
    kw = dict(input_size=input_size, channel_order="BGR", batch_size=batch, flip=True, device=device, progress=False)
    embed_images(model, images[: min(4, batch)], **kw)  # warm-up
    n, start = 0, time.perf_counter()
    while True:
        embed_images(model, images, **kw)
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            break
    return {"model": f"{name} width {width} @ {input_size}", "params_m": count_parameters(model) / 1e6, "threads": torch.get_num_threads(),
            "device": str(device), "images": n, "seconds": round(elapsed, 2), "images_per_s": round(n / elapsed, 2)}


def loop_ten_fold(dist: np.ndarray, same: np.ndarray) -> float:
    """Per fold, per threshold accuracy on the training folds (InsightFace calculate_roc style)."""
    accs = []
    n = len(dist)
    for f in fold_slices(n):
        test = np.zeros(n, bool)
        test[f] = True
        train_acc = np.array([np.mean((dist[~test] < t) == same[~test]) for t in ACCURACY_THRESHOLDS])
        best = ACCURACY_THRESHOLDS[int(np.argmax(train_acc))]
        accs.append(np.mean((dist[test] < best) == same[test]))
    return float(np.mean(accs))


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def ten_fold_timing() -> dict:
    rng = np.random.default_rng(0)
    n, dim = 6000, 512
    same = np.tile([True] * 300 + [False] * 300, 10)
    e1 = rng.normal(size=(n, dim)).astype(np.float32)
    e2 = np.where(same[:, None], e1 + rng.normal(scale=1.2, size=(n, dim)), rng.normal(size=(n, dim))).astype(np.float32)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 /= np.linalg.norm(e2, axis=1, keepdims=True)
    dist = pair_distances(e1, e2)
    t_full, full = timed(lambda: ten_fold_accuracy(e1, e2, same))
    t_acc, acc = timed(lambda: accuracy_from_distances(dist, same))
    t_val, _ = timed(lambda: val_far_from_distances(dist, same, 1e-3))
    t_loop, loop_acc = timed(lambda: loop_ten_fold(dist, same), repeats=1)
    assert abs(loop_acc - acc["accuracy_mean"]) < 1e-12, "loop reference disagrees"
    return {"pairs": n, "accuracy_mean": full["accuracy_mean"], "val_at_far_1e-3": full["val_at_far"]["val_mean"],
            "ten_fold_accuracy_s (incl. validation, VAL@FAR)": round(t_full, 4), "accuracy_only_s": round(t_acc, 4),
            "val_at_far_s": round(t_val, 4), "loop_reference_s": round(t_loop, 4), "speedup_vs_loop": round(t_loop / t_acc, 1)}


def sweep(device: torch.device, batches: list[int], rounds: int, n_images: int) -> dict:
    """Images/s of the default model's flip-fused embedding per (batch size, channels_last), alternating."""
    torch.manual_seed(0)
    model = build_backbone("ir_18", embedding_size=512, input_size=48, width=0.25)
    images = np.random.default_rng(0).integers(0, 256, size=(n_images, 112, 112, 3), dtype=np.uint8)
    variants = [(b, cl) for b in batches for cl in (False, True)]
    times: dict = {v: [] for v in variants}
    outputs = {}
    for r in range(rounds + 1):  # round 0 warms every variant up and is not counted
        for b, cl in (variants if r % 2 == 0 else variants[::-1]):
            t = time.perf_counter()
            out = embed_images(model, images, input_size=48, batch_size=b, flip=True, device=device, progress=False,
                               channels_last=cl)
            if r:
                times[(b, cl)].append(time.perf_counter() - t)
            outputs[(b, cl)] = out
    base_key = (256, False) if (256, False) in times else variants[0]
    base = float(np.median(times[base_key]))
    ref = outputs[base_key]
    rows = []
    for (b, cl), ts in times.items():
        med = float(np.median(ts))
        rows.append({"batch_size": b, "channels_last": cl, "images_per_s": round(n_images / med, 1),
                     "seconds": [round(t, 3) for t in ts], f"speedup_vs_{base_key[0]}_{'cl' if base_key[1] else 'contiguous'}": round(base / med, 2),
                     "max_rel_diff": float(np.abs(outputs[(b, cl)] - ref).max() / np.abs(ref).max())})
    return {"model": "ir_18 width 0.25 @ 48 (params.yaml default), flip on", "images": n_images, "rounds": rounds,
            "threads": torch.get_num_threads(), "device": str(device), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per embedding measurement")
    parser.add_argument("--skip-ir50", action="store_true")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    parser.add_argument("--sweep", action="store_true", help="only the batch size x channels_last sweep (module doc)")
    parser.add_argument("--batches", default="64,128,256", help="--sweep: comma list of batch sizes")
    parser.add_argument("--rounds", type=int, default=4, help="--sweep: timed rounds")
    parser.add_argument("--images", type=int, default=3072, help="--sweep: images per call (the default eval: 3,080)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    results: dict = {"load_before": os.getloadavg(), "cpu_count": os.cpu_count(), "torch": torch.__version__}
    if args.sweep:
        results["sweep"] = sweep(device, [int(b) for b in args.batches.split(",")], args.rounds, args.images)
        results["load_after"] = os.getloadavg()
        print(json.dumps(results, indent=2))
        if args.out:
            from marginlab.core.io import write_json

            write_json(args.out, results)
        return
    results["ten_fold"] = ten_fold_timing()
    print(json.dumps(results["ten_fold"], indent=2), flush=True)
    default_threads = torch.get_num_threads()
    thread_counts = sorted({1, default_threads}) if device.type == "cpu" else [default_threads]
    configs = [("ir_18", 0.25, 64, 64)] + ([] if args.skip_ir50 else [("ir_50", 1.0, 112, 16)])
    results["embed"] = []
    for name, width, size, batch in configs:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            r = embed_throughput(name, width, size, device, args.budget, batch)
            results["embed"].append(r)
            print(json.dumps(r), flush=True)
    torch.set_num_threads(default_threads)
    results["load_after"] = os.getloadavg()
    if args.out:
        from marginlab.core.io import write_json

        write_json(args.out, results)
    print(json.dumps({"load_before": results["load_before"], "load_after": results["load_after"]}))


if __name__ == "__main__":
    main()
