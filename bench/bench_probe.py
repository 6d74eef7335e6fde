"""Benchmark of one probe measurement with and without BatchNorm recalibration (issue #22).

    python bench/bench_probe.py [--rounds 3] [--probe 512] [--threads 2]

The default model (IR-18 × 0.25 at 48 px, 512-d) in the state of a run's step 4 (a few training-mode
forwards), a probe of ``--probe`` random inputs; times :meth:`marginlab.train.probe.ProbeSet.measure`
as the training callback calls it, at an epoch end (both passes) and at a progress step (clean pass only),
with ``recalibrate_batch=128`` (the default) beside ``None`` (the running statistics as they are), median
of ``--rounds``, side by side in one process. Also prints how far the two probes' norms lie apart, the
artefact the recalibration removes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from marginlab.backbones import build_backbone
from marginlab.heads import build_head
from marginlab.train.probe import ProbeSet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--probe", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = build_backbone("ir_18", 512, 48, width=0.25, dropout=0.4)
    head = build_head("adaface", 512, 100, stats_init="bias_corrected")
    backbone.train()
    with torch.no_grad():  # step 4: running statistics still 66 % their initial values
        for _ in range(4):
            backbone(torch.randn(128, 3, 48, 48))
    n = args.probe
    rng = np.random.default_rng(0)
    probe = ProbeSet(np.arange(n), rng.integers(0, 100, n), torch.randn(n, 3, 48, 48), torch.randn(n, 3, 48, 48),
                     np.zeros((n, 4), dtype=bool))
    cpu = torch.device("cpu")
    rows = {}
    for label, passes in (("epoch end (clean + augmented)", ("clean", "augmented")), ("progress step (clean)", ("clean",))):
        for recal in (None, 128):
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                frame = probe.measure(1, backbone, head, batch_size=128, device=cpu, channels_last=True,
                                      passes=passes, recalibrate_batch=recal)
                times.append(time.perf_counter() - t0)
            rows[(label, recal)] = (statistics.median(times), frame)
    print(f"probe of {n} images, {args.threads} threads, median of {args.rounds}")
    for label in ("epoch end (clean + augmented)", "progress step (clean)"):
        plain, recal = rows[(label, None)][0], rows[(label, 128)][0]
        print(f"  {label:32s} running stats {plain:6.2f} s   recalibrated {recal:6.2f} s   ratio {recal / plain:4.2f}x")
    plain, recal = rows[("progress step (clean)", None)][1], rows[("progress step (clean)", 128)][1]
    print(f"  clean-pass norm at step 4: running stats {plain['norm'].mean():.2f} ± {plain['norm'].std():.2f}, "
          f"recalibrated {recal['norm'].mean():.2f} ± {recal['norm'].std():.2f}")


if __name__ == "__main__":
    main()
