"""Execution settings of a training run: seed, threads, mixed precision, memory format.

- Seed: ``SeedSequence([params.seed, run.seed])`` → one 31-bit seed for Python, NumPy, torch (CPU and
  CUDA), the DataLoader and the augmentations. Runs that differ only in the head share initial
  backbone weights and data order; ``run.seed`` makes replicates.
- Threads: ``torch.set_num_threads(train.threads)``, 0 = every core this process may use.
- AMP (``train.amp``): on CUDA ``auto`` = bf16 autocast when the GPU supports it, else fp16 with a
  ``GradScaler``; ``off`` = fp32. On the CPU ``auto`` = fp32: bf16 autocast measured 1.15x faster
  training but 0.7x eval on this machine's avx512_bf16 CPU, not worth losing fp32 results that match
  across machines; ``bf16``/``fp16`` are honoured when asked for explicitly. The margin head
  and the loss always run in fp32 (acos/cos near ±1 are precision-sensitive).
- channels_last (``train.channels_last``): on CUDA (tensor-core convolutions) and on the CPU, where
  ``bench/bench_train.py`` measured, alternating off/on in one process on the 2-core machine, 1.36x
  training and ~1.2x eval throughput for the quarter-width IR-18 at 64x64 (8.4 vs 11.4 CPU-ms per
  training image), and a full default run in 90 s instead of 157 s. ``CPU_CHANNELS_LAST = False``
  turns it off on the CPU regardless of params.
- OpenMP: ``marginlab train`` sets ``OMP_WAIT_POLICY=PASSIVE`` (unless set) before importing torch. On a
  shared CPU, spinning OpenMP threads waste the cores other processes need: ``bench_train.py`` with
  ``OMP_WAIT_POLICY=ACTIVE`` vs ``PASSIVE`` (alternating, load 2-3): 85 vs 126-143 training images/s;
  at load ~6 ACTIVE 2-thread training fell below 1-thread speed.
- Determinism: on the CPU ``torch.use_deterministic_algorithms(True)`` (cheap there) without its
  NaN-filling of new tensors (``fill_uninitialized_memory``: 1.07-1.14x on an eager step, same
  results), restored after the run; on CUDA ``cudnn.benchmark`` is on for speed, so GPU runs are reproducible only statistically.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Iterator
from typing import Optional

import numpy as np
import torch

from marginlab.core.device import available_cores

#: Whether train.channels_last is honoured on the CPU (measured: 1.36x for the default model; module doc).
CPU_CHANNELS_LAST = True


def derive_seed(global_seed: int, run_seed: int) -> int:
    """One reproducible 31-bit seed from the params seed and the run's replicate seed."""
    return int(np.random.SeedSequence([int(global_seed), int(run_seed)]).generate_state(1)[0] & 0x7FFFFFFF)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def set_threads(threads: int, processes: int = 1) -> int:
    """Set torch's intra-op threads (0 = this process's share of the available cores when ``processes``
    training processes share the node); returns the number set."""
    n = threads if threads > 0 else max(1, available_cores() // max(processes, 1))
    torch.set_num_threads(n)
    return n


def resolve_amp(mode: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype for ``train.amp`` on ``device`` (None = fp32); see the module docstring."""
    if mode == "off":
        return None
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if mode == "auto":
            return torch.bfloat16 if bf16_ok else torch.float16
        if mode == "bf16":
            if not bf16_ok:
                raise RuntimeError("train.amp is 'bf16' but this GPU does not support bfloat16; use 'fp16' or 'auto'")
            return torch.bfloat16
        if mode == "fp16":
            return torch.float16
    else:
        if mode == "auto":
            return None
        if mode == "bf16":
            return torch.bfloat16
        if mode == "fp16":
            return torch.float16
    raise ValueError(f"train.amp must be auto, off, bf16 or fp16, got {mode!r}")


def amp_name(dtype: Optional[torch.dtype]) -> str:
    return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def use_channels_last(requested: bool, device: torch.device) -> bool:
    return bool(requested) and (device.type == "cuda" or CPU_CHANNELS_LAST)


def set_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=...)`` without its import of inductor's config.

    The public function imports ``torch._inductor.config`` (1.4 s on the 2-core CPU, in every training
    process) only to set inductor's ``deterministic`` flag. Here that flag is set only where inductor is
    already loaded; a backbone compiled later gets it from :func:`marginlab.train.compiled.compile_backbone`,
    which passes ``deterministic`` with its inductor options.
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # a torch without the private setter: the public function
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        return
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        inductor_config.deterministic = mode
    setter(mode, warn_only=warn_only)


@contextlib.contextmanager
def determinism(device: torch.device) -> Iterator[None]:
    """Deterministic kernels on the CPU, cudnn autotuning on CUDA; previous settings restored after."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory
    try:
        if device.type == "cpu":
            set_deterministic_algorithms(True, warn_only=True)
            # Deterministic mode also fills every new tensor with NaN (a debugging aid against reading
            # uninitialised memory): ~20 % of an eager CPU step in the profiler. No kernel we run reads
            # memory it did not write, so results are bit-identical without it (checked on whole runs).
            torch.utils.deterministic.fill_uninitialized_memory = False
        else:
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        set_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.utils.deterministic.fill_uninitialized_memory = prev_fill
