"""One training run: backbone + margin head + quality proxy, epoch loop, probe, checkpoints, selection.

Per step: ``z = backbone(x)`` (under autocast when enabled), ``q = proxy(head, z, y, index)``,
``loss = CE(head(z, y, q), y) + head.regularizer(z)`` (head and loss in fp32), SGD step (optionally
``clip_grad_norm_`` at ``train.grad_clip``; ``GradScaler`` with fp16), then one schedule step
(:mod:`marginlab.train.optim`). A non-finite loss stops the run with :class:`TrainingDivergedError`
(epoch, step, run) and leaves the last good checkpoint untouched.

Per epoch (dvclive ``step = epoch``; epoch 0 = before training, probe only):
``train/loss`` (CE + regulariser, mean over steps), ``train/ce``, ``train/acc`` (share of samples whose
argmax of the *plain* cosine logits ŵ_j·ẑ is the label, in training mode and on augmented inputs),
``train/lr`` (the rate of the epoch's last step), ``train/images_per_s`` (training loop only),
``train/norm_mean``/``train/norm_std`` (||z|| over the epoch's samples), ``head/<key>`` for
``head.state_summary()``, ``val/acc`` when a validation split exists (``train.val_fraction > 0``; see
:mod:`.selection`), and ``epoch``. The probe (:mod:`.probe`) is written to ``probe/epoch_XX.parquet``; then the checkpoint.
Inside the epochs, right after the optimiser steps of the progress schedule (``train.probe_progress``,
:mod:`.probe_schedule`), the probe is also written to ``probe/progress/step_XXXXXXX.parquet``; the
epoch's ``train/seconds`` leaves that time out.

Structure: :func:`train_process` (one process; :func:`marginlab.train.run_train` starts one or several) builds the run's :class:`~.context.TrainContext` (configuration, device,
data, modules, optimiser) and runs the epochs; probing, validation/selection, dvclive and checkpointing
are callbacks (:mod:`.callbacks`); :func:`write_run_outputs` writes ``model.pt`` and the summary.

Resume: ``checkpoint.pt`` holds the full state (weights, optimiser, scheduler, scaler, RNG states incl.
the loader's generator, epoch, global step, metric history, probe tables, best-so-far weights, and a
fingerprint of the configuration and data). With ``resume=True`` a matching checkpoint is continued at
the next epoch and reaches the same final weights and metrics as an uninterrupted run on the CPU; a
checkpoint from another configuration (changed params or data) is discarded with a warning. Probe
files and the metric history that a pipeline tool deleted are rewritten from the checkpoint.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from marginlab.train.job import TrainJob
from marginlab.core.device import resolve_device
from marginlab.core.io import write_json
from marginlab.models import save_model
from marginlab.train import runtime
from marginlab.train.callbacks import (
    Callback,
    Checkpointing,
    LiveLogging,
    Probing,
    Progress,
    Validation,
    clear_outputs,
)
from marginlab.train.context import TrainContext, build_context
from marginlab.train.distributed import SINGLE, DistEnv, all_reduce_sum, barrier, decorrelate_rng, init_group, worker_device


class TrainingDivergedError(RuntimeError):
    """The loss (or the weights) became NaN/Inf; the last good checkpoint is kept."""


@dataclass
class RunState:
    """What hooks (tests, fault injection) may look at or modify."""

    run_name: str
    backbone: nn.Module
    head: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    global_step: int = 0
    rank: int = 0


@dataclass
class TrainHooks:
    """Optional callbacks: ``on_step(epoch, step, state)`` before each step's forward pass,
    ``on_step_end(epoch, step, state, loss)`` after its optimiser step with the step's loss over the
    global batch (all-reduced under data parallelism, so every process must be given the same hooks),
    ``on_epoch_end(epoch, state)`` after the epoch's checkpoint is written. Data-parallel workers get
    the hooks by pickling: pass module-level functions or picklable objects."""

    on_step: Optional[Callable[[int, int, RunState], None]] = None
    on_step_end: Optional[Callable[[int, int, RunState, float], None]] = None
    on_epoch_end: Optional[Callable[[int, RunState], None]] = None


# --------------------------------------------------------------------------- public API
def train_process(job: TrainJob, *, resume: bool = True, hooks: Optional[TrainHooks] = None,
                  dist_env: DistEnv = SINGLE) -> Optional[dict]:
    """Train ``job``'s run into ``<runs_dir>/<run>/``; return the train summary.

    Writes ``checkpoint.pt`` (every epoch), ``probe/epoch_XX.parquet``, ``live/`` (dvclive),
    ``model.pt`` (selected weights, see :mod:`marginlab.models`) and ``train_summary.json``.

    ``dist_env``: this process's rank in a data-parallel group (:mod:`.distributed`; its process group is
    joined here). Every rank trains its shard of each global batch; rank 0 alone measures the probe and
    the validation split and writes every file; ranks > 0 return None.
    """
    t_call = time.perf_counter()
    hooks = hooks or TrainHooks()
    resolved, run_name = job.run, job.name
    device = worker_device(resolve_device(resolved.train.device), dist_env)
    if dist_env.active:
        dist_env = init_group(dist_env, resolved.train.distributed, device)
    with runtime.determinism(device):
        ctx = build_context(job, dist_env)
        main = dist_env.is_main
        checkpointing = Checkpointing()
        live = LiveLogging()
        measuring: list[Callback] = [Probing(ctx), Validation()] if main else []
        recording: list[Callback] = [live, checkpointing] if main else []
        progress = checkpointing.resume(ctx) if resume else _fresh_start(ctx)
        decorrelate_rng(ctx.seed, progress.epoch, dist_env)
        for cb in (*measuring, *recording):
            cb.start(ctx, progress)
        barrier(dist_env)
        rs = RunState(run_name, ctx.backbone, ctx.head, ctx.optimizer, progress.epoch, progress.global_step,
                      rank=dist_env.rank)
        progress_probes = ProgressProbes(ctx, progress, measuring)
        for epoch in range(progress.epoch + 1, ctx.cfg.epochs + 1):
            t_epoch = time.perf_counter()
            rs.epoch = epoch
            metrics = train_epoch(ctx, epoch, hooks, rs, last_good=progress.epoch, after_step=progress_probes)
            progress.global_step = rs.global_step
            _check_weights_finite(ctx, epoch, progress.epoch)
            for cb in measuring:
                cb.measure(ctx, progress, epoch, metrics)
            metrics["epoch"] = float(epoch)
            progress.history.append(metrics)
            progress.epoch = epoch
            progress.wall_time_s += time.perf_counter() - t_epoch
            for cb in recording:
                cb.record(ctx, progress, epoch, metrics)
            barrier(dist_env)  # the others wait while rank 0 probes and writes the epoch's checkpoint
            if hooks.on_epoch_end is not None:
                hooks.on_epoch_end(epoch, rs)
        for cb in (*measuring, *recording):
            cb.end(ctx, progress)
        summary = None
        if main:
            summary = write_run_outputs(ctx, progress, live_backend=live.backend,
                                        call_seconds=time.perf_counter() - t_call)
    return summary


class ProgressProbes:
    """After each optimiser step: at a step of the progress schedule the measuring callbacks' ``step_end``
    (rank 0 only); every rank then waits at a barrier, as at epoch ends, so no rank runs ahead into the next
    step's gradient all-reduce and waits there on a collective timeout instead."""

    def __init__(self, ctx: TrainContext, progress: Progress, callbacks: list[Callback]):
        self.ctx, self.progress, self.callbacks = ctx, progress, callbacks
        self.steps = frozenset(ctx.probe_schedule.steps)

    def __call__(self, epoch: int, step: int) -> float:
        """Measure at ``step`` (the global step just completed) if it is on the schedule; the seconds spent."""
        if step not in self.steps:
            return 0.0
        t0 = time.perf_counter()
        for cb in self.callbacks:
            cb.step_end(self.ctx, self.progress, epoch, step)
        barrier(self.ctx.dist)
        return time.perf_counter() - t0


def _fresh_start(ctx: TrainContext) -> Progress:
    if ctx.dist.is_main:
        clear_outputs(ctx)
    return Progress()


# --------------------------------------------------------------------------- epoch
def train_epoch(ctx: TrainContext, epoch: int, hooks: TrainHooks, rs: RunState, *, last_good: int,
                after_step: Callable[[int, int], float] = lambda epoch, step: 0.0) -> dict[str, float]:
    """One epoch of training steps; returns the epoch's ``train/*`` and ``head/*`` metrics.

    ``after_step(epoch, global_step)`` runs after every optimiser step (the progress probes) and returns the
    seconds it took, which ``train/seconds`` and ``train/images_per_s`` leave out.
    """
    head, optimizer, scaler = ctx.head, ctx.optimizer, ctx.scaler
    network = ctx.network
    network.train()
    ctx.data.train_ds.set_epoch(epoch)  # selects the epoch's shuffle order and augmentation draws
    loader = ctx.data.loader
    n_steps = len(loader)
    check_every = 1 if ctx.device.type == "cpu" else 25
    losses = torch.zeros(n_steps, device=ctx.device)
    # running sums on the device (no per-step host sync): ce, correct, norm, norm², loss
    sums = torch.zeros(5, device=ctx.device, dtype=torch.float64)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    lr_used = optimizer.param_groups[0]["lr"]
    grad_clip = ctx.cfg.grad_clip
    seen = 0
    paused = 0.0
    t0 = time.perf_counter()
    bar = tqdm(loader, total=n_steps, desc=f"{ctx.name} {epoch}/{ctx.cfg.epochs}", unit="batch",
               leave=False, dynamic_ncols=True, mininterval=1.0, disable=not ctx.dist.is_main)
    step = 0

    def check_embeddings(z: torch.Tensor) -> None:  # before the proxy/head reject them
        if check_every == 1 and not bool(torch.isfinite(z).all()):
            losses[step] = float("nan")
            _check_losses(losses[: step + 1], ctx, epoch, last_good, what="the embeddings are")

    _unwrap(network).check_embeddings = check_embeddings
    for step, batch in enumerate(bar):
        if hooks.on_step is not None:
            hooks.on_step(epoch, step, rs)
        x, y, index = ctx.inputs(batch)
        z, logits = network(x, y, index)
        ce = F.cross_entropy(logits.float(), y)
        loss = ce + head.regularizer(z)
        losses[step] = loss.detach()
        if (step + 1) % check_every == 0 or step == n_steps - 1:
            _check_losses(losses[: step + 1], ctx, epoch, last_good)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        lr_used = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
        ctx.scheduler.step()
        rs.global_step += 1
        paused += after_step(epoch, rs.global_step)
        if hooks.on_step_end is not None:
            global_loss = all_reduce_sum(loss.detach().double().clone(), ctx.dist) / ctx.dist.world_size
            hooks.on_step_end(epoch, step, rs, float(global_loss))
        with torch.no_grad():
            zd = z.detach()
            cos = head.cosine(zd)
            norms = zd.norm(dim=1).double()
            sums += torch.stack([
                ce.detach().double() * len(y), (cos.argmax(dim=1) == y).sum().double(),
                norms.sum(), (norms**2).sum(), loss.detach().double() * len(y),
            ])
        seen += len(y)
        if ctx.device.type == "cpu" and step % 10 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - t0 - paused
    # The epoch's metrics over the global batch: every process adds its sums (a no-op for one process).
    totals = all_reduce_sum(torch.cat([sums, torch.tensor([float(seen)], device=ctx.device, dtype=sums.dtype)]),
                            ctx.dist)
    ce_sum, correct, norm_sum, norm_sq, loss_sum, seen = (float(v) for v in totals.cpu())
    n = float(seen)
    norm_mean = norm_sum / n
    norm_std = math.sqrt(max(norm_sq / n - norm_mean**2, 0.0) * n / max(n - 1, 1))
    metrics = {
        "train/loss": loss_sum / n,
        "train/ce": ce_sum / n,
        "train/acc": correct / n,
        "train/lr": float(lr_used),
        "train/images_per_s": seen / seconds,
        "train/seconds": seconds,
        "train/norm_mean": norm_mean,
        "train/norm_std": norm_std,
    }
    for key, value in (head.state_summary() or {}).items():
        metrics[f"head/{key}"] = float(value)
    return metrics


def _unwrap(network: nn.Module) -> nn.Module:
    """The TrainingNetwork inside a DistributedDataParallel wrapper (or the network itself)."""
    return getattr(network, "module", network)


# --------------------------------------------------------------------------- divergence
_DIVERGENCE_ADVICE = "Lower train.lr, set train.grad_clip or add warm-up (train.warmup_epochs)."


def _what_is_kept(ckpt_path: Path, last_good: int) -> str:
    """What a diverged run leaves on disk, as it is (checkpoints are written at the end of each epoch)."""
    if last_good > 0 and ckpt_path.exists():
        return f"The checkpoint {ckpt_path} of the last good epoch ({last_good}) is kept"
    return (f"No checkpoint exists yet ({ckpt_path} is written at the end of each completed epoch), "
            "so the next run starts from scratch")


def _check_losses(losses: torch.Tensor, ctx: TrainContext, epoch: int, last_good: int,
                  what: str = "the loss is") -> None:
    finite = torch.isfinite(losses)
    if bool(finite.all()):
        return
    step = int((~finite).nonzero()[0, 0])
    value = float(losses[step])
    raise TrainingDivergedError(
        f"run {ctx.name!r}: {what} {value} at epoch {epoch}, step {step}; training stopped. "
        f"{_what_is_kept(ctx.checkpoint_path, last_good)}. {_DIVERGENCE_ADVICE}"
    )


def _check_weights_finite(ctx: TrainContext, epoch: int, last_good: int) -> None:
    for name, module in (("backbone", ctx.backbone), ("head", ctx.head)):
        for pname, p in module.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise TrainingDivergedError(
                    f"run {ctx.name!r}: {name} parameter {pname} is not finite at the end of epoch {epoch}; "
                    f"training stopped. {_what_is_kept(ctx.checkpoint_path, last_good)}. {_DIVERGENCE_ADVICE}"
                )


# --------------------------------------------------------------------------- end of run
def write_run_outputs(ctx: TrainContext, progress: Progress, *, live_backend: str, call_seconds: float) -> dict:
    """``model.pt`` (the selected epoch's weights) and ``train_summary.json``; returns the summary."""
    cfg = ctx.cfg
    if cfg.selection == "val" and progress.best is not None:
        sel_epoch, b_state, h_state = progress.best["epoch"], progress.best["backbone"], progress.best["head"]
    else:
        sel_epoch, b_state, h_state = progress.epoch, ctx.backbone.state_dict(), ctx.head.state_dict()
    data = ctx.data
    save_model(ctx.layout.model, backbone_state=b_state, head_state=h_state, resolved=ctx.resolved,
               num_classes=data.num_classes, channel_order=ctx.channel_order, epoch=sel_epoch,
               selection=cfg.selection)
    last = progress.history[-1] if progress.history else {}
    images = sum(m["train/images_per_s"] * m["train/seconds"] for m in progress.history)
    train_seconds = sum(m["train/seconds"] for m in progress.history)
    summary = {
        "run": ctx.name,
        "head": ctx.resolved.head,
        "proxy": ctx.resolved.proxy,
        "backbone": ctx.resolved.model.backbone,
        "epochs": progress.epoch,
        "steps_per_epoch": ctx.steps_per_epoch,
        "global_steps": progress.global_step,
        "train_images": int(len(data.train_idx)),
        "train_identities": int(np.unique(data.train_ds.labels).size),  # identities with training images
        "val_images": int(len(data.val_idx)),
        "num_classes": data.num_classes,
        "images_per_s": images / train_seconds if train_seconds > 0 else float("nan"),
        "train_seconds": train_seconds,
        "wall_time_s": progress.wall_time_s,
        "call_seconds": call_seconds,
        "selection": cfg.selection,
        "selected_epoch": sel_epoch,
        "final_loss": last.get("train/loss"),
        "final_acc": last.get("train/acc"),
        "final_norm_mean": last.get("train/norm_mean"),
        "val_acc": (progress.best or {}).get("val_acc"),
        "final_val_acc": last.get("val/acc"),
        "head_state": {k[len("head/"):]: v for k, v in last.items() if k.startswith("head/")},
        "device": str(ctx.device),
        "device_name": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu",
        "amp": runtime.amp_name(ctx.amp_dtype),
        "channels_last": ctx.channels_last,
        "threads": ctx.threads,
        "world_size": ctx.dist.world_size,
        "backend": ctx.dist.backend,
        "batch_size": cfg.batch_size,
        "batch_per_process": cfg.batch_size // ctx.dist.world_size,
        "sync_batchnorm": bool(ctx.dist.active and cfg.distributed.sync_batchnorm),
        "sync_head_stats": bool(ctx.dist.active and cfg.distributed.sync_head_stats),
        "num_workers": cfg.num_workers,
        "cache_decoded": data.cache_decoded,
        "seed": ctx.seed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
        "resumed_from_epoch": progress.resumed_from,
        "probe_schedule": ctx.probe_schedule.as_summary(),
        "live_backend": live_backend,
        "torch": torch.__version__,
    }
    write_json(ctx.layout.train_summary, summary)
    return summary
