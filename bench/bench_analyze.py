"""Benchmark of the analysis stage's bootstrap: ``correlation_table`` with 1 thread vs ``analysis.workers``.

    python bench/bench_analyze.py [--runs 4] [--epochs 7] [--n 512] [--resamples 2000] [--rounds 2] [--workers 0]

A probe table shaped like the default pipeline's (``--runs`` runs x ``--epochs`` epoch tables x 2 passes
x ``--n`` images, quantities norm and P_yi against iq and gt_quality: 4 groups of ``--n`` per run and
epoch, the default pipeline has 16 runs x 7 epochs) goes through :func:`correlation_table` with
``workers=1`` and with ``--workers`` (0 = one per core), alternating (A B, B A, ...) over ``--rounds``
rounds. Prints the median seconds of each, the ratio, and whether the two tables are identical (they
must be: every group seeds its own generator).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd

from marginlab.analysis.correlation import correlation_table, resolve_workers


def probe_table(runs: int, epochs: int, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for r in range(runs):
        q = rng.uniform(0, 1, n)
        for epoch in range(epochs):
            for pass_ in ("clean", "augmented"):
                frames.append(pd.DataFrame({
                    "run": f"run{r}-s0", "label": f"run{r}", "head": "adaface", "epoch": epoch, "pass": pass_,
                    "norm": 10 + 5 * q * epoch / max(epochs - 1, 1) + rng.normal(0, 1, n),
                    "p_yi": rng.uniform(0, 1, n), "iq": q + rng.normal(0, 0.1, n), "gt_quality": q,
                }))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--n", type=int, default=512, help="probe images per table")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="threads of the parallel variant (0 = one per core)")
    args = parser.parse_args()
    probe = probe_table(args.runs, args.epochs, args.n)
    workers = resolve_workers(args.workers)
    times: dict[int, list[float]] = {1: [], workers: []}
    tables = {}
    order = [1, workers]
    for r in range(args.rounds):
        for w in (order if r % 2 == 0 else order[::-1]):
            t = time.perf_counter()
            tables[w] = correlation_table(probe, n_resamples=args.resamples, seed=0, workers=w)
            times[w].append(time.perf_counter() - t)
    one, many = (float(np.median(times[w])) for w in (1, workers))
    groups = len(tables[1]) // 2
    print(json.dumps({
        "load": os.getloadavg(), "groups": groups, "resamples": args.resamples, "n": args.n,
        "seconds_1_thread": [round(t, 2) for t in times[1]], f"seconds_{workers}_threads": [round(t, 2) for t in times[workers]],
        "ms_per_group_1_thread": round(1000 * one / groups, 1), "speedup": round(one / many, 2),
        "identical": bool(tables[1].equals(tables[workers])),
    }, indent=2))


if __name__ == "__main__":
    main()
