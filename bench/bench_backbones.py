"""Training-step throughput of backbone + margin head, channels_last off vs on (issue 2 §5).

One step = forward of backbone and head, cross-entropy (+ head regulariser), backward, SGD step
(momentum 0.9, weight decay 5e-4: the recipe's optimiser) on a fixed random batch, 1000 classes,
AdaFace head (``marginlab.heads``; a plain Linear classifier if that module cannot be imported).

Configurations:

* ``small``: the CPU default model, ``ir_18`` width 0.25 at 64×64, batch 128;
* ``ir50``: ``ir_50`` width 1 at 112×112, batch 32 (CPU) / 256 (CUDA, the recipe's per-GPU batch).

The two memory layouts of one configuration are measured in alternating rounds (off, on, off, on,
...), so load changes on a shared CPU hit both alike; the table reports images/s from the median
step time and the on/off ratio. ``--device cuda`` adds bf16 autocast (``--amp``) and synchronises
before each clock read.

    python bench/bench_backbones.py                       # CPU, 2 threads, ~1.5–2 min
    python bench/bench_backbones.py --device cuda --rounds 5 --steps 20
    python bench/bench_backbones.py --configs small --json bench/backbones_cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from marginlab.backbones import build_backbone, count_parameters


@dataclass(frozen=True)
class BenchConfig:
    key: str
    backbone: str
    width: float
    input_size: int
    batch_cpu: int
    batch_cuda: int


CONFIGS = {
    "small": BenchConfig("small", "ir_18", 0.25, 64, 128, 512),
    "ir50": BenchConfig("ir50", "ir_50", 1.0, 112, 32, 256),
}
NUM_CLASSES = 1000


def build_head(embedding_size: int, num_classes: int) -> tuple[nn.Module, str]:
    """AdaFace head with paper defaults, or a Linear classifier if marginlab.heads is unavailable."""
    try:
        from marginlab.heads import build_head as _build_head
    except ImportError:
        return nn.Linear(embedding_size, num_classes), "linear (marginlab.heads not importable)"
    return _build_head("adaface", embedding_size, num_classes), "adaface"


class Step:
    """A reusable training step for one (config, layout) pair on a fixed random batch."""

    def __init__(self, cfg: BenchConfig, device: torch.device, channels_last: bool, amp: str, batch: int, seed: int):
        torch.manual_seed(seed)
        self.device = device
        self.amp = amp
        self.backbone = build_backbone(cfg.backbone, 512, cfg.input_size, width=cfg.width).to(device)
        self.head, self.head_name = build_head(512, NUM_CLASSES)
        self.head = self.head.to(device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.backbone = self.backbone.to(memory_format=fmt)
        self.images = torch.randn(batch, 3, cfg.input_size, cfg.input_size, device=device).contiguous(memory_format=fmt)
        self.labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
        params = [*self.backbone.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.params = count_parameters(self.backbone)
        self.batch = batch

    def _autocast(self):
        if self.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def __call__(self) -> float:
        """Run one step; return its wall time in seconds."""
        self._sync()
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            emb = self.backbone(self.images)
            if isinstance(self.head, nn.Linear):
                logits = self.head(emb)
                reg = 0.0
            else:
                logits = self.head(emb, self.labels)
                reg = self.head.regularizer(emb)
        loss = F.cross_entropy(logits.float(), self.labels) + reg
        loss.backward()
        self.optimizer.step()
        self._sync()
        elapsed = time.perf_counter() - start
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss {loss.item()} in benchmark step")
        return elapsed

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def bench_config(cfg: BenchConfig, device: torch.device, args: argparse.Namespace) -> list[dict]:
    batch = args.batch or (cfg.batch_cuda if device.type == "cuda" else cfg.batch_cpu)
    steps = {cl: Step(cfg, device, cl, args.amp, batch, args.seed) for cl in (False, True)}
    times: dict[bool, list[float]] = {False: [], True: []}
    n_steps = args.steps if args.steps else (1 if cfg.key == "ir50" and device.type == "cpu" else 3)
    for cl, step in steps.items():
        for _ in range(args.warmup):
            step()
    for r in range(args.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for cl in order:
            times[cl].extend(steps[cl]() for _ in range(n_steps))
        print(f"  {cfg.key}: round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    rows = []
    for cl in (False, True):
        med = statistics.median(times[cl])
        rows.append({
            "config": cfg.key, "backbone": cfg.backbone, "width": cfg.width, "input": cfg.input_size,
            "batch": batch, "params_m": steps[cl].params / 1e6, "head": steps[cl].head_name,
            "channels_last": cl, "amp": args.amp, "steps": len(times[cl]),
            "step_ms_median": 1e3 * med, "step_ms_min": 1e3 * min(times[cl]),
            "images_per_s": batch / med,
        })
    rows[1]["speedup_vs_contiguous"] = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    rows[0]["speedup_vs_contiguous"] = 1.0
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| model | input | batch | params (M) | channels_last | AMP | steps | step ms (median) "
            "| images/s | ratio vs contiguous |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['backbone']} ×{r['width']:g} | {r['input']} | {r['batch']} | {r['params_m']:.2f} | "
            f"{'on' if r['channels_last'] else 'off'} | {r['amp']} | {r['steps']} | {r['step_ms_median']:.0f} | "
            f"{r['images_per_s']:.1f} | {r['speedup_vs_contiguous']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    parser.add_argument("--configs", default="small,ir50", help=f"comma list of {', '.join(CONFIGS)}")
    parser.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default="auto",
                        help="autocast dtype; auto = bf16 on CUDA, off on CPU")
    parser.add_argument("--rounds", type=int, default=2, help="alternating off/on rounds per config")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per layout per round (0 = per-config default)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per layout before timing")
    parser.add_argument("--batch", type=int, default=0, help="override the batch size of every config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows (and environment) to this JSON file")
    args = parser.parse_args(argv)

    keys = [k.strip() for k in args.configs.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CONFIGS]
    if unknown or not keys:
        parser.error(f"unknown config(s) {unknown}; allowed: {', '.join(CONFIGS)}")
    if args.rounds < 1 or args.warmup < 0 or args.steps < 0 or args.batch < 0:
        parser.error("--rounds must be ≥ 1 and --warmup/--steps/--batch ≥ 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    device = torch.device(args.device)
    if args.amp == "auto":
        args.amp = "bf16" if device.type == "cuda" else "off"
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    env = {
        "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "loadavg_before": os.getloadavg(),
    }
    print(f"# torch {env['torch']} on {env['device_name']}, {env['threads']} threads, load {env['loadavg_before']}",
          flush=True)
    rows: list[dict] = []
    for key in keys:
        rows.extend(bench_config(CONFIGS[key], device, args))
    env["loadavg_after"] = os.getloadavg()
    print(markdown(rows))
    print(f"\nload average before {env['loadavg_before']}, after {env['loadavg_after']}")
    if args.json:
        from marginlab.core.io import write_json

        write_json(args.json, {"environment": env, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
