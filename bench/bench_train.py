"""Training-speed benchmark: images/s of a training step and of evaluation, peak RSS, channels_last.

    python bench/bench_train.py                       # CPU: default model and IR-50 @112, few steps
    python bench/bench_train.py --device cuda         # GPU: AMP (train.amp auto) + channels_last
    python bench/bench_train.py --e2e --e2e-prepared prepared --e2e-quality quality
                                                      # + one full run of params.yaml's first run
    python bench/bench_train.py --compile             # eager vs torch.compile'd backbone (train.compile),
                                                      # IR-18@112 batch 32 and the params.yaml default

``--compile`` (issue #13): every variant (``--variants``, default ``eager,compiled``) is built from the
same seed, runs the same first step on the same batch (loss and every gradient compared with eager's:
the numerics check), then the variants' training steps alternate in one process (A B B A ...) under
``runtime.determinism`` as ``run_train`` runs them; per variant the median step time, eager's median
over it, and the first-call time of compiled variants (compile + one step, in a fresh inductor cache
with ``--compile-cache cold``, the default). A variant is ``eager`` or ``compiled[:max-autotune]``
with modifiers ``+head`` (compile the AdaFace head too), ``+nofill`` (the step with
``torch.utils.deterministic.fill_uninitialized_memory = False``), ``+cppwrapper`` (inductor
``cpp_wrapper``), ``+nodet`` (the step outside deterministic mode).

Models: ``default`` = IR-18 width 0.25 @64, batch 128 (params.yaml's CPU default until it moved to 48×48:
``default48``, 100 classes), ``ir18_112`` = IR-18 @112 (batch 32 on the CPU), ``ir50`` =
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

# Same OpenMP wait policy as marginlab train (override by setting OMP_WAIT_POLICY=ACTIVE to compare).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import contextlib  # noqa: E402
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
from marginlab.train.runtime import amp_name, determinism, resolve_amp, set_threads  # noqa: E402

CONFIGS = {
    "default": dict(backbone="ir_18", width=0.25, input_size=64, batch=128, classes=100),
    "ir18_112": dict(backbone="ir_18", width=1.0, input_size=112, batch=128, classes=1000),
    "ir50": dict(backbone="ir_50", width=1.0, input_size=112, batch=128, classes=1000),
    # params.yaml's default run: 100 synthetic identities x 24 images, 18 steps per epoch
    "default48": dict(backbone="ir_18", width=0.25, input_size=48, batch=128, classes=100),
}
#: Models cheap enough on the CPU for the full batch and step count.
SMALL_MODELS = ("default", "default48")


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


# --------------------------------------------------------------------------- --compile
def _parse_variant(spec: str) -> dict:
    base, *mods = spec.split("+")
    kind, _, flavour = base.partition(":")
    known = {"head", "nofill", "cppwrapper", "nodet"}
    if kind not in ("eager", "compiled") or flavour not in ("", "max-autotune") or set(mods) - known:
        raise SystemExit(f"bad variant {spec!r}: eager|compiled[:max-autotune] "
                         f"with modifiers +{' +'.join(sorted(known))}")
    if kind == "eager" and set(mods) & {"head", "cppwrapper"}:
        raise SystemExit(f"bad variant {spec!r}: +head/+cppwrapper need a compiled variant")
    options: dict = {}
    if flavour == "max-autotune":
        options["max_autotune"] = True
    if "cppwrapper" in mods:
        options["cpp_wrapper"] = True
    return {"name": spec, "compiled": kind == "compiled", "options": options, "head": "head" in mods,
            "nofill": "nofill" in mods, "nodet": "nodet" in mods}


@contextlib.contextmanager
def _step_settings(v: dict):
    import torch.utils.deterministic as tud

    prev_fill, prev_det = tud.fill_uninitialized_memory, torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if v["nofill"]:
            tud.fill_uninitialized_memory = False
        if v["nodet"]:
            torch.use_deterministic_algorithms(False)
        yield
    finally:
        tud.fill_uninitialized_memory = prev_fill
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)


#: Gradients smaller than this share of the step's largest gradient are treated as structurally zero
#: (a bias feeding a training-mode BatchNorm has gradient 0 in exact arithmetic: only rounding noise
#: of ~1e-7 is left there, so a relative difference means nothing); they count in the absolute difference.
GRAD_ZERO_SHARE = 1e-4


def _compare(ref: dict, got: dict) -> dict:
    """Largest differences of one step's loss, embeddings, gradients and BatchNorm statistics.

    Per gradient tensor: max|Δ| / max|g| (``grad_max_rel_diff``, the worst tensor named) and ||Δ|| / ||g||.
    """
    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        a, b = a.double(), b.double()
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))

    loss_abs = abs(got["loss"] - ref["loss"])
    top = max(float(g.abs().max()) for g in ref["grads"].values())
    grads = {k: rel(got["grads"][k], g) for k, g in ref["grads"].items()
             if float(g.abs().max()) >= GRAD_ZERO_SHARE * top}
    worst = max(grads, key=grads.get)
    normrel = {k: float((got["grads"][k].double() - ref["grads"][k].double()).norm() / ref["grads"][k].double().norm())
               for k in grads}
    return {"loss_abs_diff": loss_abs, "loss_rel_diff": loss_abs / max(abs(ref["loss"]), 1e-30),
            "emb_rel_diff": rel(got["z"], ref["z"]),
            "grad_max_abs_diff": max(float((got["grads"][k].double() - g.double()).abs().max())
                                     for k, g in ref["grads"].items()),
            "grad_max_rel_diff": grads[worst], "grad_worst": worst,
            "grad_max_normwise_rel_diff": max(normrel.values()),
            "grad_tensors_compared": len(grads), "grad_tensors_zero": len(ref["grads"]) - len(grads),
            "bn_stats_max_abs_diff": max((float((got["bn"][k].double() - b.double()).abs().max())
                                          for k, b in ref["bn"].items()), default=0.0)}


def bench_compile(name: str, device: torch.device, *, variants: list[str], steps: int, cold_cache: bool,
                  batch: int | None = None, input_size: int | None = None, width: float | None = None,
                  amp: str = "auto", fp64_reference: bool = False) -> dict:
    """Eager vs compiled training steps of model ``name``, interleaved in this process (module doc)."""
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    from marginlab.train.compiled import compile_backbone

    cfg = dict(CONFIGS[name])
    for key, value in (("batch", batch), ("input_size", input_size), ("width", width)):
        if value:
            cfg[key] = value
    specs = [_parse_variant(v) for v in variants]
    if specs[0]["name"] != "eager":
        raise SystemExit("--variants must start with 'eager' (the reference)")
    if fp64_reference:  # the same first step in float64 (eager, untimed): how far fp32 eager itself is
        specs.insert(0, {**_parse_variant("eager"), "name": "eager-fp64", "fp64": True})
    dtype = resolve_amp(amp, device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(cfg["batch"], 3, cfg["input_size"], cfg["input_size"], generator=gen).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, cfg["classes"], (cfg["batch"],), generator=gen).to(device)
    for v in specs:
        torch.manual_seed(0)  # identical initial weights in every variant
        v["backbone"] = build_backbone(cfg["backbone"], embedding_size=512, input_size=cfg["input_size"],
                                       width=cfg["width"], dropout=0.4).to(device).to(memory_format=torch.channels_last)
        v["head"] = build_head("adaface", 512, cfg["classes"]).to(device)
        if v.get("fp64"):
            v["backbone"].double()
            v["head"].double()
        v["opt"] = build_optimizer([v["backbone"], v["head"]], lr=0.01, momentum=0.9, weight_decay=5e-4)
        v["fn"] = (compile_backbone(v["backbone"], mode="on", device=device, steps_total=0,
                                    batch_size=cfg["batch"], options=v["options"])
                   if v["compiled"] else v["backbone"])
        v["head_fn"] = torch.compile(v["head"], dynamic=False) if v["head"] else v["head"]
        v["times"], v["cpu"] = [], []

    def step(v: dict, record: bool = False) -> dict | None:
        with _step_settings(v):
            torch.manual_seed(1234)  # the same dropout mask in every variant (fallback_random)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                z = v["fn"](x.double() if v.get("fp64") else x)
            loss = F.cross_entropy(v["head_fn"](z if v.get("fp64") else z.float(), y), y)
            v["opt"].zero_grad(set_to_none=True)
            loss.backward()
            out = None
            if record:
                named = [*(("backbone." + k, p) for k, p in v["backbone"].named_parameters()),
                         *(("head." + k, p) for k, p in v["head"].named_parameters())]
                out = {"loss": loss.item(), "z": z.detach().float().clone(),
                       "grads": {k: p.grad.detach().clone() for k, p in named},
                       "bn": {k: b.detach().clone() for k, b in v["backbone"].named_buffers() if "running" in k}}
            v["opt"].step()
        return out

    rows = {"model": name, **cfg, "device": str(device), "amp": amp_name(dtype), "channels_last": True,
            "cold_cache": cold_cache, "variants": {}}
    ref = eager_rec = None
    with tempfile.TemporaryDirectory() as cache_root:
        for i, v in enumerate(specs):  # the numerics step; compiled variants compile here (first call)
            ctx = (temporary_cache_dir(os.path.join(cache_root, str(i))) if cold_cache and v["compiled"]
                   else contextlib.nullcontext())
            with ctx:
                t = time.perf_counter()
                rec = step(v, record=True)
                _sync(device)
                v["first_call_s"] = time.perf_counter() - t
            if ref is None:
                ref = rec
            else:
                v["numerics"] = _compare(ref, rec)
                if fp64_reference and v["name"] != "eager":  # and against fp32 eager
                    v["numerics_vs_eager"] = _compare(eager_rec, rec)
            if v["name"] == "eager":
                eager_rec = rec
        del ref, rec
        if fp64_reference:
            rows["fp64_first_call_s"] = specs[0]["first_call_s"]
            specs = specs[1:]
            rows["numerics_reference"] = "eager float64"
        else:
            rows["numerics_reference"] = "eager float32"
        for v in specs:  # one warm-up step each
            step(v)
        _sync(device)
        for r in range(steps):
            for v in (specs if r % 2 == 0 else specs[::-1]):
                t, c = time.perf_counter(), time.process_time()
                step(v)
                _sync(device)
                v["times"].append(time.perf_counter() - t)
                v["cpu"].append(time.process_time() - c)
    base = statistics.median(specs[0]["times"])
    for v in specs:
        med = statistics.median(v["times"])
        row = {"median_step_s": med, "speedup_vs_eager": base / med,
               "paired_speedup_median": statistics.median(a / b for a, b in zip(specs[0]["times"], v["times"])),
               "median_cpu_s": statistics.median(v["cpu"]), "images_per_s": cfg["batch"] / med,
               "first_call_s": v["first_call_s"], "step_times_s": [round(t, 4) for t in v["times"]]}
        if v["compiled"]:
            row["compile_s"] = v["first_call_s"] - med  # first call minus one ordinary compiled step
        for key in ("numerics", "numerics_vs_eager"):
            if key in v:
                row[key] = v[key]
        rows["variants"][v["name"]] = row
    rows["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return rows


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
    from marginlab.core.config import Params, load_params
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
    ap.add_argument("--compile", action="store_true",
                    help="eager vs torch.compile'd backbone instead of the memory-format comparison")
    ap.add_argument("--variants", default="eager,compiled",
                    help="--compile: comma list, eager first (module doc: compiled[:max-autotune], +head, ...)")
    ap.add_argument("--fp64-reference", action="store_true",
                    help="--compile: compare every variant's first step with a float64 eager step too")
    ap.add_argument("--compile-cache", default="cold", choices=["cold", "warm"],
                    help="--compile: first call in a fresh inductor cache (cold) or the user's cache (warm)")
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
    if args.compile:
        models = args.models if args.models != ap.get_default("models") else "ir18_112,default48"
        for name in models.split(","):
            n = args.steps or (5 if device.type == "cpu" and name not in SMALL_MODELS else 10)
            batch = args.batch or (32 if device.type == "cpu" and name not in SMALL_MODELS else None)
            with determinism(device):
                r = bench_compile(name, device, variants=args.variants.split(","), steps=n,
                                  cold_cache=args.compile_cache == "cold", batch=batch, input_size=args.input_size,
                                  width=args.width, amp=args.amp, fp64_reference=args.fp64_reference)
            r["load_avg_end"] = os.getloadavg()
            print(json.dumps(r), flush=True)
            results["runs"].append(r)
            for vname, v in r["variants"].items():  # one short line per compared variant
                if vname != "eager":
                    num = v.get("numerics_vs_eager", v.get("numerics", {}))
                    print(json.dumps({"model": name, "variant": vname,
                                      "eager_step_s": r["variants"]["eager"]["median_step_s"],
                                      "step_s": v["median_step_s"], "speedup": v["speedup_vs_eager"],
                                      "paired_speedup": v["paired_speedup_median"], "compile_s": v.get("compile_s"),
                                      **{k: num.get(k) for k in ("loss_abs_diff", "loss_rel_diff", "grad_max_abs_diff",
                                                                 "grad_max_rel_diff", "grad_max_normwise_rel_diff")}}),
                          flush=True)
        models = []
    else:
        models = args.models.split(",")
    for name in models:
        n = steps
        small = name in SMALL_MODELS
        if not small and device.type == "cpu":
            n = args.ir50_steps or 2
        rows = []
        # alternate the memory formats (A B A B) so load changes hit both alike
        for rep in range(2 if len(cl_modes) > 1 else 1):
            for cl in cl_modes:
                # IR-50/IR-18@112 at batch 128 needs ~15 GB RSS on the CPU: default to 32 there
                batch = args.batch or (32 if device.type == "cpu" and not small else None)
                r = bench_model(name, device, steps=n, warmup=args.warmup if small else 1,
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
