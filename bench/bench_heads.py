"""Forward + backward time of every margin head against a plain linear + cross-entropy step.

Each step: logits = head(z, y) (or F.linear(z, W) for the reference), loss = CE(logits, y) +
regulariser, loss.backward(); gradients are zeroed between steps. All heads are timed in the same
process, interleaved round by round (so load changes on a shared machine hit every head alike), and
the median over rounds is reported with its ratio to linear + CE.

    python bench/bench_heads.py                       # D=512, B=256, C=10,000, CPU float32
    python bench/bench_heads.py --classes 1000 --repeats 5 --threads 2

Prints a markdown table (ms/step, ratio to linear+CE). Goal from the issue: AdaFace ≤ 1.3× at 10k classes.

On an oversubscribed machine (load average above the core count) use ``--threads 1``: with several
OpenMP threads every small elementwise op waits at a barrier for a descheduled thread, which inflates
and scatters the timings of the heads (many small ops) far more than the reference (three big matmuls).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from marginlab.heads import HEAD_NAMES, build_head


class LinearCE(nn.Module):
    """The reference: an unnormalised linear classifier with the same weight shape."""

    name = "linear+CE"

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_size) * embedding_size**-0.5)

    def forward(self, z, y, quality=None):
        return F.linear(z, self.weight)

    def regularizer(self, z):
        return z.new_zeros(())


def step(module: nn.Module, z: torch.Tensor, y: torch.Tensor) -> None:
    z.grad = None
    module.weight.grad = None
    loss = F.cross_entropy(module(z, y), y) + module.regularizer(z)
    loss.backward()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedding-size", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--classes", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=15, help="timed rounds (each round times every head once)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--heads", nargs="*", default=list(HEAD_NAMES), choices=list(HEAD_NAMES))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    D, B, C = args.embedding_size, args.batch_size, args.classes
    modules: dict[str, nn.Module] = {"linear+CE": LinearCE(D, C)}
    for name in args.heads:
        modules[name] = build_head(name, D, C).train()
    # Norms around 20-40 like a trained IR-ResNet; the embedding requires grad as the backbone output would.
    z = (torch.randn(B, D) * 1.3).requires_grad_(True)
    y = torch.randint(0, C, (B,))

    for _ in range(args.warmup):
        for module in modules.values():
            step(module, z, y)
    times: dict[str, list[float]] = {k: [] for k in modules}
    for _ in range(args.repeats):
        for key, module in modules.items():
            t0 = time.perf_counter()
            step(module, z, y)
            times[key].append(time.perf_counter() - t0)

    ref = statistics.median(times["linear+CE"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"D={D}, B={B}, C={C:,}, CPU float32, torch {torch.__version__}, threads={torch.get_num_threads()}, "
          f"{args.repeats} interleaved rounds (median), load avg (1 min) {load:.2f}")
    print()
    print("| head | ms/step (median) | min ms | ratio to linear+CE |")
    print("|---|---:|---:|---:|")
    for key, ts in times.items():
        med = statistics.median(ts)
        print(f"| {key} | {med * 1e3:.1f} | {min(ts) * 1e3:.1f} | {med / ref:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
