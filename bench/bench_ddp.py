"""Data-parallel training throughput: one process vs N processes on the same machine, same global batch.

    python bench/bench_ddp.py                    # CPU: 1 process x all cores vs 2 processes (gloo)
    python bench/bench_ddp.py --nproc 4 --device cuda --images 20000 --input-size 112 --width 1

Writes a small RecordIO of synthetic faces (``bench_loader.make_recordio``: ``--images`` of 112x112,
``--classes`` identities), then trains one epoch of params.yaml's default model (IR-18, ``--width``, ``--input-size``,
global batch ``--batch``) with ``train.distributed.nproc_per_node`` 1 and N, alternating (1, N, 1, N,
...) ``--rounds`` times so both see the same machine load, through ``marginlab.train.run_train`` exactly
as the train stage runs it. Reports the training loop's images/s (``train_summary.json``:
``images_per_s``, the global batch over the epoch's step time) and the whole call's wall time (process
start-up and rendezvous included), medians and the paired ratio. JSON to stdout (and ``--out``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as marginlab train

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from marginlab.core.config import Params  # noqa: E402
from marginlab.train import run_train  # noqa: E402

from bench_loader import make_recordio  # noqa: E402  (bench/ is on sys.path when run as a script)


def params_for(prepared: Path, out: Path, nproc: int, args: argparse.Namespace) -> Params:
    return Params.model_validate({
        "seed": 1,
        "data": {"prepared_dir": str(prepared)},
        "quality": {"output_dir": str(out / "quality")},
        "model": {"backbone": "ir_18", "width": args.width, "input_size": args.input_size, "embedding_size": 512},
        "train": {"epochs": 1, "batch_size": args.batch, "num_workers": args.workers, "threads": 0,
                  "device": args.device, "probe_size": 64, "compile": "off",
                  "distributed": {"nproc_per_node": nproc}},
        "runs": {"r": {"head": "adaface"}},
        "runs_dir": str(out / "runs"),
    })


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=2560)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--input-size", type=int, default=48)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    results: dict[int, list[dict]] = {1: [], args.nproc: []}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared"
        prepared.mkdir()
        source = make_recordio(prepared / "train.rec", args.images, args.classes)
        for rnd in range(args.rounds):
            for n in (1, args.nproc):
                out = Path(tmp) / f"r{rnd}n{n}"
                t0 = time.perf_counter()
                summary = run_train(params_for(prepared, out, n, args), "r", resume=False)
                results[n].append({"images_per_s": summary["images_per_s"], "wall_s": time.perf_counter() - t0,
                                   "world_size": summary["world_size"], "threads": summary["threads"]})
    one, many = results[1], results[args.nproc]
    report = {
        "load_at_end": os.getloadavg()[0],
        "config": vars(args),
        "images": source,
        "runs": {str(k): v for k, v in results.items()},
        "median_images_per_s": {"1": statistics.median(r["images_per_s"] for r in one),
                                str(args.nproc): statistics.median(r["images_per_s"] for r in many)},
        "median_wall_s": {"1": statistics.median(r["wall_s"] for r in one),
                          str(args.nproc): statistics.median(r["wall_s"] for r in many)},
        "paired_speedup_images_per_s": statistics.median(b["images_per_s"] / a["images_per_s"] for a, b in zip(one, many)),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
