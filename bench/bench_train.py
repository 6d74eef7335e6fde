"""Training-speed benchmark: images/s of a training step and of evaluation, peak RSS, channels_last.

    python bench/bench_train.py                       # CPU: default model and IR-50 @112, few steps
    python bench/bench_train.py --device cuda         # GPU: AMP (train.amp auto) + channels_last
    python bench/bench_train.py --e2e --e2e-prepared prepared --e2e-quality quality
                                                      # + one full run of params.yaml's first run

Models: ``default`` = IR-18 width 0.25 @64, batch 128 (the CPU default of params.yaml), ``ir50`` =
IR-50 @112, batch 128 on CUDA and 32 on the CPU (batch 128 takes ~15 GB RSS there; ``--batch``) (the paper's ablation backbone is IR-18 @112, its main ones IR-50/100). A train
step = forward + AdaFace head + CE + backward + SGD step on a fixed random batch (data loading is
excluded; ``--e2e`` includes it). Eval = eval-mode forward under no-grad. On the CPU, channels_last
off/on are measured alternately in the same process so their ratio is meaningful on a shared machine;
the absolute numbers are noisy there (check ``uptime`` load, printed first); ``*_cpu_ms_per_image``
(process CPU time, best read at ``--threads 1``) is the load-robust measure of compute cost.
Results go to stdout as JSON (and ``--out FILE``).
"""

from __future__ import annotations

import os

# Same OpenMP wait policy as stages/train.py (override by setting OMP_WAIT_POLICY=ACTIVE to compare).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from marginlab.backbones import build_backbone, count_parameters  # noqa: E402
from marginlab.heads import build_head  # noqa: E402
from marginlab.train.optim import build_optimizer  # noqa: E402
from marginlab.train.runtime import amp_name, resolve_amp, set_threads  # noqa: E402

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


def _synthetic_like_set(root: Path, identities: int, per_identity: int, jpeg_quality: int) -> None:
    """Blocky random faces with noise, 112x112 JPEG: same sizes and decode cost as the synthetic set."""
    from marginlab.data.formats import encode_jpeg, write_recordio

    rng = np.random.default_rng(0)
    samples = []
    for c in range(identities):
        base = rng.integers(0, 256, (14, 14, 3)).astype(np.float32)
        for _ in range(per_identity):
            img = np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 20, (112, 112, 3))
            samples.append((encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), jpeg_quality), c))
    write_recordio(root / "train.rec", samples)


def e2e_default_run(threads: int, workers: int, epochs: int | None, probe_size: int | None,
                    cpu_channels_last: bool | None = None, input_size: int | None = None,
                    prepared: str | None = None, quality: str | None = None) -> dict:
    """A full ``run_train`` of the first run in ``params.yaml`` (the project's defaults).

    Data: ``prepared`` (e.g. the pipeline's ``prepared/``, with ``quality/``) or, when not given, a
    synthetic-looking set of ``data.synthetic.train_identities x train_images_per_identity`` images.
    """
    from marginlab.config import Params, load_params
    from marginlab.train import runtime, run_train

    if cpu_channels_last is not None:
        runtime.CPU_CHANNELS_LAST = cpu_channels_last
    repo = Path(__file__).resolve().parents[1]
    params = load_params(repo / "params.yaml") if (repo / "params.yaml").exists() else Params()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if prepared is None:
            syn = params.data.synthetic
            _synthetic_like_set(tmp / "prepared", syn.train_identities, syn.train_images_per_identity, syn.jpeg_quality)
        train = {"threads": threads, "num_workers": workers}
        if epochs:
            train["epochs"] = epochs
        if probe_size:
            train["probe_size"] = probe_size
        raw = params.model_dump(mode="json")
        raw["data"]["prepared_dir"] = str(Path(prepared).resolve()) if prepared else str(tmp / "prepared")
        raw["quality"]["output_dir"] = str(Path(quality).resolve()) if quality else str(tmp / "quality")
        raw["runs_dir"] = str(tmp / "runs")
        raw["train"].update(train)
        if input_size:
            raw["model"]["input_size"] = input_size
        p = Params.model_validate(raw)
        run = next(iter(p.runs))
        cwd = os.getcwd()
        os.chdir(tmp)  # keep dvclive away from the project repository
        try:
            t = time.perf_counter()
            summary = run_train(p, run, resume=False)
            wall = time.perf_counter() - t
        finally:
            os.chdir(cwd)
    keys = ("run", "backbone", "epochs", "steps_per_epoch", "images_per_s", "train_seconds", "wall_time_s",
            "final_loss", "final_acc", "peak_rss_mb", "peak_rss_children_mb", "threads", "num_workers",
            "channels_last")
    return {"e2e_wall_s": wall, "input_size": p.run(run).model.input_size, "width": p.run(run).model.width,
            "probe_size": p.run(run).train.probe_size, **{k: summary[k] for k in keys}}


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
    ap.add_argument("--e2e", action="store_true", help="also time a full default run_train (CPU)")
    ap.add_argument("--e2e-workers", type=int, default=1)
    ap.add_argument("--e2e-epochs", type=int, default=None)
    ap.add_argument("--e2e-probe-size", type=int, default=None)
    ap.add_argument("--e2e-input-size", type=int, default=None)
    ap.add_argument("--e2e-prepared", default=None, help="prepared data dir (default: a generated synthetic-like set)")
    ap.add_argument("--e2e-quality", default=None, help="quality output dir (scores.parquet), optional")
    ap.add_argument("--e2e-cpu-channels-last", type=int, choices=[0, 1], default=None,
                    help="override runtime.CPU_CHANNELS_LAST for the e2e run")
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
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
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
                # IR-50/IR-18@112 at batch 128 needs ~15 GB RSS on the CPU: default to 32 there
                batch = args.batch or (32 if device.type == "cpu" and name != "default" else None)
                r = bench_model(name, device, steps=n, warmup=args.warmup if name == "default" else 1,
                                amp=args.amp, channels_last=cl, batch=batch,
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
        cl = None if args.e2e_cpu_channels_last is None else bool(args.e2e_cpu_channels_last)
        r = e2e_default_run(threads, args.e2e_workers, args.e2e_epochs, args.e2e_probe_size, cl, args.e2e_input_size,
                            args.e2e_prepared, args.e2e_quality)
        print(json.dumps(r), flush=True)
        results["e2e"] = r
    results["load_avg_end"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
