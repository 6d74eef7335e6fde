"""Loader throughput vs. the default model's training step rate (issue 3 §4).

Builds a RecordIO of ``--images`` 112×112 JPEG faces (``marginlab.data.synthetic`` training faces,
or random smooth images when that module is missing), then measures

* loader images/s: decode + AdaFace augmentation (the recipe's p = 0.2 each, flip 0.5) at 112,
  resize to 64, normalise, batch 128, for 0/1/2 workers, with and without ``cache_decoded``;
  steady state = epochs after the first (persistent workers already forked);
* training images/s of the default CPU model of params.yaml: ``ir_18`` width 0.25, input 64
  (``--backbone/--width/--input-size``), AdaFace head, batch 128,
  forward + backward + SGD step on random tensors, 2 intra-op threads, channels_last as in the
  default ``train.channels_last``.

The goal is loader rate ≥ 2 × step rate. The CPU is shared: compare ratios from one run, and read the
``load`` line printed first.

    python bench/bench_loader.py [--images 2000] [--epochs 3] [--steps 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from marginlab.core.config import HEAD_PARAM_MODELS, AugmentConfig, ModelConfig
from marginlab.train.input.datasets import FaceRecordDataset, build_loader


def smooth_faces(n: int, classes: int, size: int = 112, seed: int = 0):
    """``n`` random smooth RGB images (blurred noise + a per-identity colour), labels sorted."""
    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, classes, n))
    labels = np.searchsorted(np.unique(labels), labels)  # contiguous 0..C-1
    colours = rng.integers(40, 216, (classes, 3))
    for label in labels:
        noise = rng.normal(0, 50, (size // 4, size // 4, 3)).astype(np.float32)
        tex = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        yield np.clip(colours[label] + tex, 0, 255).astype(np.uint8), int(label)


def make_recordio(path: Path, n: int, classes: int) -> str:
    """Write ``n`` images of ``classes`` identities; synthetic faces when that module is available."""
    from marginlab.data.formats import write_recordio

    try:
        from marginlab.core.config import SyntheticConfig
        from marginlab.data.synthetic import generate_images, train_specs
    except ImportError:
        def encoded():
            for rgb, label in smooth_faces(n, classes):
                _, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
                yield buf.tobytes(), label

        write_recordio(path, encoded())
        return "random smooth images (blurred noise + identity colour), JPEG q95"
    cfg = SyntheticConfig(train_identities=classes, train_images_per_identity=max(1, n // classes))
    specs = train_specs(cfg)
    images = generate_images(0, specs, cfg, workers=0, progress=True, desc="synthetic faces")
    first = min(s.identity for s in specs)
    write_recordio(path, ((im.jpeg, s.identity - first) for im, s in zip(images, specs)))
    return f"marginlab.data.synthetic train faces (default degradation mix), JPEG q{cfg.jpeg_quality}"


def loader_rate(rec: Path, workers: int, cached: bool, epochs: int, batch: int, input_size: int) -> float:
    ds = FaceRecordDataset(rec, input_size=input_size, augment=AugmentConfig(), cache_decoded=cached, seed=0)
    loader = build_loader(ds, batch, shuffle=True, drop_last=True, num_workers=workers, device="cpu", seed=0)
    images, elapsed = 0, 0.0
    for epoch in range(epochs + 1):  # epoch 0 warms up (worker fork, first decode)
        ds.set_epoch(epoch)
        t0 = time.perf_counter()
        n = sum(b["image"].shape[0] for b in loader)
        if epoch > 0:
            images += n
            elapsed += time.perf_counter() - t0
    del loader
    return images / elapsed


def train_rate(steps: int, batch: int, threads: int, classes: int, model: ModelConfig) -> tuple[float | None, str]:
    try:
        from marginlab.backbones import build_backbone
        from marginlab.heads import build_head
    except ImportError as err:
        return None, f"not measured: {err}"
    torch.set_num_threads(threads)
    cfg = model
    backbone = build_backbone(cfg.backbone, cfg.embedding_size, cfg.input_size, width=cfg.width, dropout=cfg.dropout)
    head = build_head("adaface", cfg.embedding_size, classes, **HEAD_PARAM_MODELS["adaface"]().model_dump())
    backbone = backbone.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(list(backbone.parameters()) + list(head.parameters()), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, cfg.input_size, cfg.input_size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,))

    def step():
        emb = backbone(x)
        loss = torch.nn.functional.cross_entropy(head(emb, y), y) + head.regularizer(emb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    rate = steps * batch / (time.perf_counter() - t0)
    return rate, f"{cfg.backbone} width {cfg.width} input {cfg.input_size} + adaface, batch {batch}, {threads} threads"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--input-size", type=int, default=64, help="model input (the CPU default of params.yaml)")
    ap.add_argument("--backbone", default="ir_18")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per loader setting (after 1 warm-up)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=6, help="timed training steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    load = os.getloadavg()
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; torch {torch.__version__}")
    results: dict = {"load_before": load, "loader": []}
    with tempfile.TemporaryDirectory() as tmp:
        rec = Path(tmp) / "bench.rec"
        t0 = time.perf_counter()
        results["images_source"] = make_recordio(rec, args.images, args.classes)
        print(f"wrote {args.images} images ({results['images_source']}) in {time.perf_counter() - t0:.1f} s")
        print("\n| workers | cached | loader images/s |\n|---|---|---|")
        for cached in (False, True):
            for workers in args.workers:
                rate = loader_rate(rec, workers, cached, args.epochs, args.batch, args.input_size)
                results["loader"].append({"workers": workers, "cached": cached, "images_per_s": rate})
                print(f"| {workers} | {cached} | {rate:,.0f} |", flush=True)
    torch_threads = torch.get_num_threads()
    model = ModelConfig(backbone=args.backbone, width=args.width, input_size=args.input_size)
    rate, desc = train_rate(args.steps, args.batch, args.threads, args.classes, model)
    torch.set_num_threads(torch_threads)
    results["train"] = {"images_per_s": rate, "setup": desc}
    if rate is None:
        print(f"\ntraining step: {desc}")
    else:
        print(f"\ntraining: {rate:,.0f} images/s ({rate / args.batch:.2f} steps/s; {desc})")
        for r in results["loader"]:
            r["ratio_to_train"] = r["images_per_s"] / rate
        best = max(results["loader"], key=lambda r: r["images_per_s"])
        print("loader / train ratio: " + ", ".join(
            f"{r['workers']}w{' cached' if r['cached'] else ''} {r['ratio_to_train']:.1f}x" for r in results["loader"]
        ))
        print(f"goal loader >= 2x train: {'met' if best['ratio_to_train'] >= 2 else 'NOT met'} (best {best['ratio_to_train']:.1f}x)")
    results["load_after"] = os.getloadavg()
    if args.json:
        from marginlab.core.io import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
