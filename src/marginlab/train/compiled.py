"""``train.compile``: the backbone's training forward through ``torch.compile`` (inductor), where it pays.

:func:`compile_backbone` returns the module a training step calls: the backbone itself, or an
``OptimizedModule`` wrapping it (``torch.compile(backbone, dynamic=False)``). The wrapper shares the
backbone's parameters and buffers, so the optimiser, checkpoints and ``model.pt`` keep using the
original module (its ``state_dict`` keys are unchanged); only the training forward goes through the
wrapper. Evaluation-mode calls (probe, validation) should call the original backbone: a compiled
module called in eval mode, or with another batch shape, compiles again.

What compiling gives (``bench/bench_train.py --compile``; eager and compiled steps alternating in one
process under ``runtime.determinism`` as ``run_train`` runs them; 2-vCPU Xeon, 2 threads, fp32,
channels_last; six runs at load 0.6-5; bench/RESULTS.md "torch.compile of the backbone"):

==============================  ============  ============  ==============  ======================
model (batch)                   eager step    compiled      speed-up        compile (cold cache)
==============================  ============  ============  ==============  ======================
IR-18 @112, width 1 (32)        3.97-10.6 s   2.99-8.21 s   1.29-1.36×      45-79 s
IR-18 @48, width 0.25 (128),    0.36-0.41 s   0.23-0.26 s   1.55-1.65×      41-71 s
params.yaml's default run
==============================  ============  ============  ==============  ======================

The gain is fused BatchNorm/PReLU/strided-shortcut kernels (the convolutions stay oneDNN's); it does
not grow with ``max-autotune`` or ``cpp_wrapper`` (same speed), and compiling the AdaFace head as well
changes nothing (its host-side label checks split it into 7 graphs). Under load 5 the compile took up
to 150 s; a warm inductor cache (the same graph compiled before by this user) cuts it to 2-3 s, but
the rule below assumes a cold one.

Rule for ``"auto"`` (:func:`decide`):

- CPU: on only for an IR-ResNet whose run repays the compile: ``steps_total × batch × width × H × W ≥
  CPU_MIN_WORK`` (8·10⁷). Derivation: the per-step saving measured 1.7-6·10⁻⁶ s per
  image·width·pixel (0.13-0.16 s for the default model, 1.0-2.3 s at IR-18@112 batch 32), taken as
  1.5·10⁻⁶ s times the depth share ``units / 8``; the compile time, taken as 120 s (above the cold
  measurements), grows with the depth alike, so depth cancels: 120 s / 1.5·10⁻⁶ s = 8·10⁷. The
  default run (108 steps of 128 images, width 0.25, 48×48: 8·10⁶) stays eager: it would save ~15 s
  and spend 40-70 s compiling (measured break-even: 320-470 steps; the rule's: 1,085). IR-18@112 at
  batch 32 compiles from 200 steps on (measured break-even: 26-48 steps). Other backbones (timm)
  stay eager on the CPU (not measured); so does a CPU without a C++ compiler (inductor needs one).
- Either device: off when the backbone has synchronised BatchNorm (``train.distributed.sync_batchnorm``:
  an all-reduce inside every normalisation, which dynamo would have to trace or break at; not measured).
- CUDA: on when the run has at least ``CUDA_MIN_STEPS`` (2000) steps. **Not measured** (no GPU was
  lent to this work): the threshold assumes the same ~1 min of compiling repaid by ≥ 0.03 s per step;
  check with ``bench/bench_train.py --compile --device cuda``.

Numerics (one step from identical weights and inputs, dropout masks identical through inductor's
``fallback_random``): the loss agrees to ≤ 3.2·10⁻⁷ relative, the embeddings to ≤ 2·10⁻⁵ (of their
largest value), each gradient tensor to ≤ 9·10⁻³ norm-wise (≤ 4.4·10⁻² for its worst element, relative
to its largest, in a last-stage convolution). That is eager fp32's own distance to the same step in
float64; compiled is the closer of the two to float64 in the embeddings, gradients and BatchNorm
statistics (both losses are within 3.3·10⁻⁷ of it). So the tolerance is "as close as fp32 eager is to
the exact step" (``tests/train/test_compiled.py`` checks a tiny network at 10⁻⁵ loss / 10⁻³ gradients).

Data parallelism: compile **before** wrapping in ``DistributedDataParallel`` and let the first call
happen inside DDP's forward (PyTorch: "apply torch.compile to the inner module passed to the
wrapper"; dynamo then splits the graph at DDP's bucket boundaries so gradient all-reduce still overlaps
the backward). Convert to SyncBatchNorm before compiling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

log = logging.getLogger(__name__)

CompileMode = Literal["auto", "on", "off"]

#: Inductor settings of the compiled backbone: dropout draws from torch's global generator exactly as
#: the eager module does (the same masks for the same seed; one extra kernel on a small tensor).
INDUCTOR_OPTIONS: dict[str, object] = {"fallback_random": True}

#: CPU: compile when steps × batch × width × H × W reaches this (module docstring: 120 s / 1.5e-6 s).
CPU_MIN_WORK = 8e7
#: CUDA: compile when the run has at least this many steps (not measured; module docstring).
CUDA_MIN_STEPS = 2000


@dataclass(frozen=True)
class CompileDecision:
    compile: bool
    reason: str


def cpu_work(backbone: nn.Module, batch_size: int, steps_total: int) -> Optional[float]:
    """``steps × batch × width × H × W`` of an IR-ResNet run (None for other backbones)."""
    width, size = getattr(backbone, "width", None), getattr(backbone, "input_size", None)
    if not hasattr(backbone, "units") or width is None or size is None:
        return None
    h, w = size
    return float(steps_total) * batch_size * float(width) * h * w


def _cpp_compiler() -> Optional[str]:
    """The C++ compiler inductor would use on the CPU, or None when there is none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return get_cpp_compiler()
    except Exception:  # noqa: BLE001 - inductor raises its own InvalidCxxCompiler (or fails to import)
        return None


def decide(mode: str, device: torch.device, *, steps_total: int, batch_size: int,
           backbone: Optional[nn.Module] = None) -> CompileDecision:
    """Whether ``train.compile = mode`` compiles ``backbone`` for a run of ``steps_total`` steps of
    ``batch_size`` images (per process) on ``device`` (the rule of the module docstring)."""
    device = torch.device(device)
    if mode == "off":
        return CompileDecision(False, "train.compile is 'off'")
    if mode == "on":
        decision = CompileDecision(True, "train.compile is 'on'")
    elif mode == "auto":
        decision = _auto_rule(device, backbone, batch_size, steps_total)
    else:
        raise ValueError(f"train.compile must be auto, on or off, got {mode!r}")
    if decision.compile and device.type == "cpu" and _cpp_compiler() is None:
        if mode == "on":
            raise RuntimeError("train.compile is 'on' but no C++ compiler was found (torch.compile's CPU backend "
                               "needs one: install g++ or set CXX), or set train.compile to 'auto' or 'off'")
        return CompileDecision(False, "auto: no C++ compiler for inductor on this machine")
    return decision


def _synchronised_batchnorm(backbone: nn.Module) -> bool:
    """Whether ``backbone`` normalises over several processes (nn.SyncBatchNorm, GlobalBatchNorm)."""
    plain = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and type(m) not in plain for m in backbone.modules())


def _auto_rule(device: torch.device, backbone: Optional[nn.Module], batch_size: int,
               steps_total: int) -> CompileDecision:
    if backbone is not None and _synchronised_batchnorm(backbone):
        return CompileDecision(False, "auto: off with synchronised BatchNorm (collectives inside the graph; "
                                      "not measured)")
    if device.type == "cuda":
        if steps_total >= CUDA_MIN_STEPS:
            return CompileDecision(True, f"auto: CUDA run of {steps_total} steps (>= {CUDA_MIN_STEPS})")
        return CompileDecision(False, f"auto: CUDA run of {steps_total} steps (< {CUDA_MIN_STEPS}) "
                                      "does not repay compiling")
    if device.type != "cpu":
        return CompileDecision(False, f"auto: off on device type {device.type!r} (not measured)")
    work = cpu_work(backbone, batch_size, steps_total) if backbone is not None else None
    if work is None:
        return CompileDecision(False, "auto: off on the CPU for backbones other than IR-ResNet (not measured)")
    if work >= CPU_MIN_WORK:
        return CompileDecision(True, f"auto: CPU run of {work:.3g} image-pixels (>= {CPU_MIN_WORK:.0e}) "
                                     "repays compiling")
    return CompileDecision(False, f"auto: CPU run of {work:.3g} image-pixels (< {CPU_MIN_WORK:.0e}) "
                                  "does not repay compiling (~1-2 min)")


def compile_backbone(backbone: nn.Module, *, mode: str, device: torch.device, steps_total: int, batch_size: int,
                     options: Optional[dict[str, object]] = None) -> nn.Module:
    """The module a training step calls: ``backbone`` itself, or ``torch.compile(backbone)`` when
    :func:`decide` says so. Keep using ``backbone`` for ``state_dict``, the optimiser and eval-mode calls.

    Call after the backbone is on its device, in its memory format and (for DDP) converted to
    SyncBatchNorm, and before wrapping in ``DistributedDataParallel``. ``options``: extra inductor
    settings (benchmarks). Compiling is lazy: the first training step pays it.
    """
    decision = decide(mode, device, steps_total=steps_total, batch_size=batch_size, backbone=backbone)
    log.info("train.compile=%s: %s", mode, decision.reason)
    if not decision.compile:
        return backbone
    # inductor's own deterministic mode follows torch's (runtime.set_deterministic_algorithms leaves inductor's
    # config alone when it is not loaded yet, to spare eager runs its import)
    deterministic = {"deterministic": torch.are_deterministic_algorithms_enabled()}
    return torch.compile(backbone, dynamic=False, options={**INDUCTOR_OPTIONS, **deterministic, **(options or {})})


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module`` is a ``torch.compile`` wrapper (what :func:`compile_backbone` returned)."""
    from torch._dynamo.eval_frame import OptimizedModule

    return isinstance(module, OptimizedModule)
