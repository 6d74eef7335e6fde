"""GPU training throughput of the paper's backbones: IR-50 / IR-100, per-GPU batch 128 and 256, eager and
``torch.compile``d backbone (issue #13 part 4; run by ``bench/device_check.sh``).

    python bench/bench_gpu.py --compile off            # eager: IR-50, IR-100 at batch 128, 256
    python bench/bench_gpu.py --compile on --budget-s 240
    python bench/bench_gpu.py --device cpu --models ir_18 --width 0.25 --batches 8 --steps 2 \\
        --warmup 1 --classes 100 --amp off --compile-backend eager      # the CPU dry run

One training step = what ``marginlab.train.loop.train_epoch`` does per batch, on a fixed random batch
already on the device (data loading excluded, see ``bench/bench_loader.py``): backbone forward under
autocast (``--amp``, default bf16), embeddings to fp32, AdaFace head (``--classes``, default 85,742 =
MS1MV2's identities, the whole head on every GPU as in DDP) + cross-entropy + the head's regulariser
in fp32, backward (``GradScaler`` with fp16), SGD step (``marginlab.train.optim.build_optimizer``).
channels_last on, ``cudnn.benchmark`` on (as ``marginlab.train.runtime`` sets them on CUDA).
``--compile on`` wraps only the backbone in ``torch.compile`` (default mode; the head and the
optimiser stay eager); the batch dimension is marked dynamic (``maybe_mark_dynamic``) so that one
compilation can serve both batch sizes, and ``graphs_compiled`` says whether the second batch size still
recompiled (``--compile-static`` recompiles per batch size on purpose); the first step's time, which
includes compilation, is reported as ``first_step_s``.

Each (model, compile) group runs in its own process with a time limit: the remaining ``--budget-s``.
A group that runs out of time or memory is reported as ``timeout``/``failed`` with the rows it had
finished kept; groups that no longer have ``--min-group-s`` seconds left are ``skipped (budget)``.
Throughput = ``batch x --steps / seconds`` over the timed steps (one synchronisation at each end, as
in training, after ``--warmup`` steps). Per-GPU targets (issue #13): IR-50 >= 2,000 img/s, IR-100 >=
1,000 img/s. Results: one JSON line per measurement on stdout and ``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

#: Per-GPU training images/s that issue #13 asks for (H100/H200, bf16, 112x112).
TARGETS = {"ir_50": 2000.0, "ir_100": 1000.0}
MS1MV2_CLASSES = 85_742


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def measure_group(args: argparse.Namespace, model: str, compiled: bool) -> None:
    """Child process: every batch size of one (model, compile) group; one JSON line per batch."""
    import torch
    import torch.nn.functional as F

    from marginlab.backbones import build_backbone, count_parameters
    from marginlab.heads import build_head
    from marginlab.train.optim import build_optimizer
    from marginlab.train.runtime import amp_name, resolve_amp

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    dtype = resolve_amp(args.amp, device)
    torch.manual_seed(0)
    backbone = build_backbone(model, embedding_size=512, input_size=args.input_size, width=args.width,
                              dropout=0.4).to(device).to(memory_format=torch.channels_last)
    head = build_head("adaface", 512, args.classes).to(device)
    opt = build_optimizer([backbone, head], lr=0.01, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    forward = backbone
    if compiled:
        forward = torch.compile(backbone, backend=args.compile_backend, dynamic=False if args.compile_static else None)
    backbone.train()
    head.train()
    params_m = count_parameters(backbone) / 1e6
    for batch in args.batches:
        row = {"model": model, "batch": batch, "compile": compiled, "width": args.width, "input_size": args.input_size,
               "classes": args.classes, "amp": amp_name(dtype), "channels_last": True, "device": str(device),
               "params_M": round(params_m, 2), "target_images_per_s": TARGETS.get(model) if args.width == 1.0 else None}
        if compiled:
            row["compile_backend"] = args.compile_backend
            row["compile_shapes"] = "static" if args.compile_static else "dynamic batch"
        try:
            x = torch.randn(batch, 3, args.input_size, args.input_size, device=device)
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, args.classes, (batch,), device=device)
            if compiled and not args.compile_static:
                torch._dynamo.maybe_mark_dynamic(x, 0)

            def step() -> torch.Tensor:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    z = forward(x)
                z = z.float()
                loss = F.cross_entropy(head(z, y), y) + head.regularizer(z)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                return loss.detach()

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            graphs = _compiled_graphs()
            t = time.perf_counter()
            loss = step()
            _sync(device)
            row["first_step_s"] = round(time.perf_counter() - t, 2)
            if compiled:  # 0 at the second batch size = no recompilation for it
                row["graphs_compiled"] = _compiled_graphs() - graphs
            for _ in range(max(0, args.warmup - 1)):
                loss = step()
            _sync(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                loss = step()
            _sync(device)
            seconds = time.perf_counter() - t
            row["loss"] = float(loss)
            row["images_per_s"] = round(batch * args.steps / seconds, 1)
            row["ms_per_step"] = round(1000 * seconds / args.steps, 2)
            if device.type == "cuda":
                row["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            row["status"] = "pass" if row["loss"] == row["loss"] and abs(row["loss"]) != float("inf") else "fail"
            if row["status"] == "fail":
                row["error"] = f"non-finite loss {row['loss']}"
        except Exception as err:  # noqa: BLE001 - an OOM or a compile error is a result to report
            row.update(status="fail", error=f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
        target = row.get("target_images_per_s")
        if target and "images_per_s" in row:
            row["meets_target"] = row["images_per_s"] >= target
        print(json.dumps(row), flush=True)


def _child_cmd(args: argparse.Namespace, model: str, compiled: bool) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", model, "--compile", "on" if compiled else "off",
           "--device", args.device, "--batches", *map(str, args.batches), "--warmup", str(args.warmup),
           "--steps", str(args.steps), "--width", str(args.width), "--input-size", str(args.input_size),
           "--classes", str(args.classes), "--amp", args.amp, "--compile-backend", args.compile_backend]
    if args.compile_static:
        cmd.append("--compile-static")
    return cmd


def run_groups(args: argparse.Namespace) -> dict:
    """Parent: one child process per (model, compile) group, within the time budget."""
    deadline = time.monotonic() + args.budget_s
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    results, groups = [], []
    for compiled in modes:  # every eager group first: they are cheap, compilation is not
        for model in args.models:
            left = deadline - time.monotonic()
            base = {"model": model, "compile": compiled, "device": args.device}
            if left < args.min_group_s:
                results += [{**base, "batch": b, "status": "skipped", "error": f"budget: {left:.0f} s left"}
                            for b in args.batches]
                groups.append({**base, "status": "skipped", "seconds": 0.0})
                continue
            t = time.monotonic()
            proc = subprocess.Popen(_child_cmd(args, model, compiled), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
            try:
                out, err = proc.communicate(timeout=left)
                status = "pass" if proc.returncode == 0 else "fail"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)  # the child and its compile workers
                out, err = proc.communicate()
                status = "timeout"
            seconds = time.monotonic() - t
            rows = []
            for line in out.splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "batch" in row:
                    rows.append(row)
            done = {r["batch"] for r in rows}
            why = {"timeout": f"timeout after {seconds:.0f} s (budget)", "fail": f"exit {proc.returncode}: "
                   + (err.strip().splitlines() or ["no stderr"])[-1][:300], "pass": "no result"}[status]
            rows += [{**base, "batch": b, "status": "timeout" if status == "timeout" else "fail", "error": why}
                     for b in args.batches if b not in done]
            for r in rows:
                print(json.dumps(r), flush=True)
            results += rows
            groups.append({**base, "status": status, "seconds": round(seconds, 1),
                           "stderr_tail": err.strip().splitlines()[-5:] if status != "pass" else []})
    return {"results": results, "groups": groups}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--models", default="ir_50,ir_100", type=lambda s: s.split(","), help="comma list of backbones")
    ap.add_argument("--batches", type=int, nargs="+", default=[128, 256], help="per-GPU batch sizes")
    ap.add_argument("--compile", default="both", choices=["off", "on", "both"])
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: the CPU dry run)")
    ap.add_argument("--compile-static", action="store_true", help="recompile for each batch size")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps (the first compiles)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--input-size", type=int, default=112)
    ap.add_argument("--classes", type=int, default=MS1MV2_CLASSES)
    ap.add_argument("--amp", default="bf16", choices=["auto", "off", "bf16", "fp16"])
    ap.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget of all groups together")
    ap.add_argument("--min-group-s", type=float, default=20.0, help="skip a group with less time left than this")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        measure_group(args, args.child, args.compile == "on")
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    info = {"device": args.device, "device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "amp": args.amp, "steps": args.steps,
            "warmup": args.warmup, "budget_s": args.budget_s, "targets_images_per_s": TARGETS}
    print(json.dumps(info), flush=True)
    out = {**info, **run_groups(args)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(r["status"] in ("pass", "skipped") for r in out["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
