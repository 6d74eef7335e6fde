"""Training-speed benchmark: images/s of a training step and of evaluation, peak RSS, channels_last.

    python bench/bench_train.py                       # CPU: default model and IR-50 @112, few steps
    python bench/bench_train.py --device cuda         # GPU: AMP (train.amp auto) + channels_last
    python bench/bench_train.py --e2e                 # + one full default run (train_run) on a
                                                      #   synthetic 100 ids x 24 images set at 112x112

Models: ``default`` = IR-18 width 0.25 @64, batch 128 (the CPU default of params.yaml), ``ir50`` =
IR-50 @112, batch 128 (the paper's ablation backbone is IR-18 @112, its main ones IR-50/100). A train
step = forward + AdaFace head + CE + backward + SGD step on a fixed random batch (data loading is
excluded; ``--e2e`` includes it). Eval = eval-mode forward under no-grad. On the CPU, channels_last
off/on are measured alternately in the same process so their ratio is meaningful on a shared machine;
the absolute numbers are noisy there (check ``uptime`` load, printed first); ``*_cpu_ms_per_image``
(process CPU time, best read at ``--threads 1``) is the load-robust measure of compute cost.
Results go to stdout as JSON (and ``--out FILE``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from marginlab.backbones import build_backbone, count_parameters
from marginlab.heads import build_head
from marginlab.train.optim import build_optimizer
from marginlab.train.runtime import amp_name, resolve_amp, set_threads

CONFIGS = {
    "default": dict(backbone="ir_18", width=0.25, input_size=64, batch=128, classes=100),
    "ir18_112": dict(backbone="ir_18", width=1.0, input_size=112, batch=128, classes=1000),
    "ir50": dict(backbone="ir_50", width=1.0, input_size=112, batch=128, classes=1000),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(name: str, device: torch.device, *, steps: int, warmup: int, amp: str, channels_last: bool,
                batch: int | None = None, input_size: int | None = None, width: float | None = None) -> dict:
    cfg = dict(CONFIGS[name])
    for key, value in (("batch", batch), ("input_size", input_size), ("width", width)):
        if value:
            cfg[key] = value
    torch.manual_seed(0)
    backbone = build_backbone(cfg["backbone"], embedding_size=512, input_size=cfg["input_size"], width=cfg["width"],
                              dropout=0.4).to(device)
    head = build_head("adaface", 512, cfg["classes"]).to(device)
    if channels_last:
        backbone.to(memory_format=torch.channels_last)
    opt = build_optimizer([backbone, head], lr=0.01, momentum=0.9, weight_decay=5e-4)
    dtype = resolve_amp(amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    x = torch.randn(cfg["batch"], 3, cfg["input_size"], cfg["input_size"], device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, cfg["classes"], (cfg["batch"],), device=device)

    def train_step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            z = backbone(x)
        loss = F.cross_entropy(head(z.float(), y), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    @torch.no_grad()
    def eval_step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            backbone(x)

    out = {"model": name, **cfg, "params_M": count_parameters(backbone) / 1e6, "amp": amp_name(dtype),
           "channels_last": channels_last, "device": str(device)}
    backbone.train()
    for _ in range(warmup):
        train_step()
    _sync(device)
    times, cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        train_step()
        _sync(device)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    out["train_images_per_s"] = cfg["batch"] / statistics.median(times)
    # CPU seconds per image: robust to other load on a shared machine (compare at --threads 1)
    out["train_cpu_ms_per_image"] = 1000 * statistics.median(cpu) / cfg["batch"]
    backbone.eval()
    for _ in range(max(1, warmup)):
        eval_step()
    _sync(device)
    times, cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        eval_step()
        _sync(device)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    out["eval_images_per_s"] = cfg["batch"] / statistics.median(times)
    out["eval_cpu_ms_per_image"] = 1000 * statistics.median(cpu) / cfg["batch"]
    if device.type == "cuda":
        out["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def e2e_default_run(threads: int, workers: int, epochs: int | None, probe_size: int | None) -> dict:
    """A full ``train_run`` with the default params on a synthetic-looking 100 x 24 set at 112x112."""
    from marginlab.config import Params
    from marginlab.data.formats import write_recordio
    from marginlab.data.images import encode_jpeg
    from marginlab.train import train_run

    params = Params()
    syn = params.data.synthetic
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        samples = []
        for c in range(syn.train_identities):
            base = rng.integers(0, 256, (14, 14, 3)).astype(np.float32)
            for _ in range(syn.train_images_per_identity):
                img = np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 20, (112, 112, 3))
                samples.append((encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), syn.jpeg_quality), c))
        write_recordio(tmp / "prepared/train.rec", samples)
        train = {"threads": threads, "num_workers": workers}
        if epochs:
            train["epochs"] = epochs
        if probe_size:
            train["probe_size"] = probe_size
        p = Params.model_validate({
            **params.model_dump(mode="json"), "data": {"prepared_dir": str(tmp / "prepared")},
            "quality": {"output_dir": str(tmp / "quality")}, "runs_dir": str(tmp / "runs"),
            "train": {**params.train.model_dump(mode="json"), **train},
        })
        cwd = os.getcwd()
        os.chdir(tmp)  # keep dvclive away from the project repository
        try:
            t = time.perf_counter()
            summary = train_run(p, next(iter(p.runs)), resume=False)
            wall = time.perf_counter() - t
        finally:
            os.chdir(cwd)
    keys = ("epochs", "steps_per_epoch", "images_per_s", "train_seconds", "final_loss", "final_acc",
            "peak_rss_mb", "peak_rss_children_mb", "threads", "num_workers")
    return {"e2e_wall_s": wall, **{k: summary[k] for k in keys}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--models", default="default,ir50", help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default: 6 cpu, 30 cuda)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    ap.add_argument("--batch", type=int, default=None, help="override the batch size of every model")
    ap.add_argument("--input-size", type=int, default=None, help="override the input size of every model")
    ap.add_argument("--width", type=float, default=None, help="override the IR width of every model")
    ap.add_argument("--channels-last", default="auto", choices=["auto", "both", "on", "off"],
                    help="auto: both on the CPU (compared side by side), on for CUDA")
    ap.add_argument("--ir50-steps", type=int, default=None, help="timed steps for ir50 (default: 2 on cpu)")
    ap.add_argument("--e2e", action="store_true", help="also time a full default train_run (CPU)")
    ap.add_argument("--e2e-workers", type=int, default=1)
    ap.add_argument("--e2e-epochs", type=int, default=None)
    ap.add_argument("--e2e-probe-size", type=int, default=None)
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    threads = set_threads(args.threads)
    steps = args.steps or (6 if device.type == "cpu" else 30)
    cl_modes = {"auto": [False, True] if device.type == "cpu" else [True], "both": [False, True],
                "on": [True], "off": [False]}[args.channels_last]
    results = {"load_avg": os.getloadavg(), "threads": threads, "torch": torch.__version__,
               "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", "runs": []}
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}), flush=True)
    for name in args.models.split(","):
        n = steps
        if name != "default" and device.type == "cpu":
            n = args.ir50_steps or 2
        rows = []
        # alternate the memory formats (A B A B) so load changes hit both alike
        for rep in range(2 if len(cl_modes) > 1 else 1):
            for cl in cl_modes:
                r = bench_model(name, device, steps=n, warmup=args.warmup if name == "default" else 1,
                                amp=args.amp, channels_last=cl, batch=args.batch,
                                input_size=args.input_size, width=args.width)
                r["rep"] = rep
                rows.append(r)
                print(json.dumps(r), flush=True)
        if len(cl_modes) > 1:
            on = [r["train_images_per_s"] for r in rows if r["channels_last"]]
            off = [r["train_images_per_s"] for r in rows if not r["channels_last"]]
            ratio = {"model": name, "channels_last_train_speedup": statistics.mean(on) / statistics.mean(off)}
            print(json.dumps(ratio), flush=True)
            rows.append(ratio)
        results["runs"].extend(rows)
    if args.e2e:
        r = e2e_default_run(threads, args.e2e_workers, args.e2e_epochs, args.e2e_probe_size)
        print(json.dumps(r), flush=True)
        results["e2e"] = r
    results["load_avg_end"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
