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

Resume: ``checkpoint.pt`` holds the full state (weights, optimiser, scheduler, scaler, RNG states incl.
the loader's generator, epoch, global step, metric history, probe tables, best-so-far weights, and a
fingerprint of the configuration and data). With ``resume=True`` a matching checkpoint is continued at
the next epoch and reaches the same final weights and metrics as an uninterrupted run on the CPU; a
checkpoint from another configuration (changed params or data) is discarded with a warning. Probe
files and the metric history that a pipeline tool deleted are rewritten from the checkpoint.
"""

from __future__ import annotations

import io
import logging
import math
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from marginlab.config import ConfigError, Params, ResolvedRun
from marginlab.device import resolve_device
from marginlab.io import write_json
from marginlab.train import runtime
from marginlab.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from marginlab.train.live import EpochLogger, logged_steps, truncate_history
from marginlab.models import build_modules, save_model
from marginlab.train.optim import build_optimizer, build_schedule, build_scheduler
from marginlab.train.probe import (
    ProbeSet,
    load_gt_quality,
    probe_path,
    select_probe,
    write_probe,
)
from marginlab.train.proxy import build_proxy, load_iq_table
from marginlab.train.selection import centre_accuracy

log = logging.getLogger(__name__)

#: Training sets up to this many images are decoded once and kept in memory (≈ 7.5 GB at 112×112).
CACHE_DECODED_MAX_IMAGES = 200_000


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


@dataclass
class TrainHooks:
    """Optional callbacks: ``on_step(epoch, step, state)`` before each step's forward pass,
    ``on_epoch_end(epoch, state)`` after the epoch's checkpoint is written."""

    on_step: Optional[Callable[[int, int, RunState], None]] = None
    on_epoch_end: Optional[Callable[[int, RunState], None]] = None


@dataclass
class _Data:
    rec_path: Path
    reader: Any
    num_images: int
    num_classes: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    train_ds: Any
    loader: Any
    val_loader: Any
    gt_table: Optional[np.ndarray]
    iq_table: Optional[np.ndarray]
    scores_path: Path
    cache_decoded: bool


@dataclass
class _Progress:
    epoch: int = 0
    global_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    probe_tables: dict[int, bytes] = field(default_factory=dict)
    best: Optional[dict[str, Any]] = None
    wall_time_s: float = 0.0
    resumed_from: Optional[int] = None


# --------------------------------------------------------------------------- public API
def train_run(params: Params, run_name: str, *, resume: bool = True, hooks: Optional[TrainHooks] = None) -> dict:
    """Train run ``run_name`` of ``params`` into ``<runs_dir>/<run_name>/``; return the train summary.

    Writes ``checkpoint.pt`` (every epoch), ``probe/epoch_XX.parquet``, ``live/`` (dvclive),
    ``model.pt`` (selected weights, see :mod:`.model_io`) and ``train_summary.json``.
    """
    t_call = time.perf_counter()
    hooks = hooks or TrainHooks()
    resolved = params.run(run_name)
    cfg = resolved.train
    if cfg.selection == "val" and cfg.val_fraction <= 0:
        raise ConfigError(
            f"run {run_name!r}: train.selection is 'val' but train.val_fraction is {cfg.val_fraction}; "
            "set a held-out fraction of the training identities' images (e.g. 0.1) or use selection 'last'"
        )
    run_dir = Path(params.runs_dir) / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    seed = runtime.derive_seed(params.seed, resolved.seed)
    device = resolve_device(cfg.device)
    threads = runtime.set_threads(cfg.threads)
    amp_dtype = runtime.resolve_amp(cfg.amp, device)
    channels_last = runtime.use_channels_last(cfg.channels_last, device)

    with runtime.determinism(device):
        runtime.seed_everything(seed)
        data = _prepare_data(params, resolved, seed, device)
        backbone, head = build_modules(resolved, data.num_classes)
        backbone.to(device)
        head.to(device)
        if channels_last:
            backbone.to(memory_format=torch.channels_last)
        optimizer = build_optimizer([backbone, head], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        steps_per_epoch = len(data.loader)
        schedule = build_schedule(cfg.milestones, cfg.lr_gamma, cfg.warmup_epochs, cfg.epochs, steps_per_epoch)
        scheduler = build_scheduler(optimizer, schedule)
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        proxy = build_proxy(resolved.proxy, scores_path=data.scores_path, num_images=data.num_images,
                            train_indices=data.train_idx)
        probe = _build_probe(params, resolved, data, seed)
        fingerprint = _fingerprint(params, resolved, data, steps_per_epoch)
        loader_gen = getattr(data.loader, "generator", None)

        ckpt_path = run_dir / "checkpoint.pt"
        progress = _Progress()
        state = _load_resumable(ckpt_path, fingerprint, run_name) if resume else None
        if state is not None:
            backbone.load_state_dict(state["backbone"])
            head.load_state_dict(state["head"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            restore_rng_state(state["rng"], loader_gen)
            progress = _Progress(
                epoch=state["epoch"], global_step=state["global_step"], history=list(state["history"]),
                probe_tables=dict(state["probe_tables"]), best=state["best"], wall_time_s=state["wall_time_s"],
                resumed_from=state["epoch"],
            )
            log.info("run %s: resuming after epoch %d of %d", run_name, progress.epoch, cfg.epochs)
        else:
            _clear_outputs(run_dir)

        _restore_probe_files(run_dir, progress.probe_tables)
        logger = _open_logger(run_dir / "live", progress)
        rs = RunState(run_name, backbone, head, optimizer, progress.epoch, progress.global_step)
        s = float(resolved.head_params.get("s", 64.0))
        measure = dict(s=s, batch_size=max(cfg.batch_size, 64), device=device, autocast_dtype=amp_dtype,
                       channels_last=channels_last)

        if progress.epoch == 0 and 0 not in progress.probe_tables:
            frame = probe.measure(0, backbone, head, **measure)
            write_probe(run_dir, 0, frame)
            progress.probe_tables[0] = _frame_bytes(frame)

        for epoch in range(progress.epoch + 1, cfg.epochs + 1):
            t_epoch = time.perf_counter()
            rs.epoch = epoch
            metrics = _train_epoch(
                epoch, cfg.epochs, data, backbone, head, proxy, optimizer, scheduler, scaler, hooks, rs,
                device=device, amp_dtype=amp_dtype, channels_last=channels_last, grad_clip=cfg.grad_clip,
                run_name=run_name, ckpt_path=ckpt_path, last_good=progress.epoch,
            )
            progress.global_step = rs.global_step
            _check_weights_finite(backbone, head, run_name, epoch, ckpt_path, progress.epoch)
            frame = probe.measure(epoch, backbone, head, **measure)
            write_probe(run_dir, epoch, frame)
            progress.probe_tables[epoch] = _frame_bytes(frame)
            if data.val_loader is not None:
                metrics["val/acc"] = _validation_accuracy(backbone, head, data.val_loader, device, amp_dtype, channels_last)
                if progress.best is None or metrics["val/acc"] > progress.best["val_acc"]:
                    progress.best = {
                        "epoch": epoch, "val_acc": metrics["val/acc"],
                        "backbone": _cpu_state(backbone), "head": _cpu_state(head),
                    }
            metrics["epoch"] = float(epoch)
            progress.history.append(metrics)
            progress.epoch = epoch
            progress.wall_time_s += time.perf_counter() - t_epoch
            logger.log(epoch, metrics)
            tqdm.write(_epoch_line(run_name, epoch, cfg.epochs, metrics), file=sys.stderr)
            save_checkpoint(ckpt_path, {
                "run_name": run_name, "fingerprint": fingerprint,
                "backbone": backbone.state_dict(), "head": head.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": capture_rng_state(loader_gen),
                "epoch": epoch, "global_step": progress.global_step, "live_step": epoch,
                "history": progress.history, "probe_tables": progress.probe_tables, "best": progress.best,
                "wall_time_s": progress.wall_time_s,
            })
            if hooks.on_epoch_end is not None:
                hooks.on_epoch_end(epoch, rs)

        logger.end()
        summary = _finish(run_dir, params, resolved, data, backbone, head, progress, steps_per_epoch,
                          device=device, amp_dtype=amp_dtype, channels_last=channels_last, threads=threads,
                          seed=seed, live_backend=logger.backend, call_seconds=time.perf_counter() - t_call)
    return summary


# --------------------------------------------------------------------------- data
def _prepare_data(params: Params, resolved: ResolvedRun, seed: int, device: torch.device) -> _Data:
    from marginlab.data.datasets import FaceRecordDataset, build_loader, train_val_split
    from marginlab.data.formats import open_recordio

    cfg = resolved.train
    prepared = Path(params.data.prepared_dir)
    rec_path = prepared / "train.rec"
    if not rec_path.exists():
        raise FileNotFoundError(
            f"training data {rec_path} not found (data.prepared_dir = {params.data.prepared_dir!r}); "
            "run the prepare stage first: python stages/prepare.py"
        )
    reader = open_recordio(rec_path, skip_corrupt=params.data.skip_corrupt)
    num_images, num_classes = len(reader), int(reader.num_classes)
    input_size = resolved.model.input_size
    common = dict(channel_order=params.data.channel_order, skip_corrupt=params.data.skip_corrupt, seed=seed)
    if cfg.val_fraction > 0:
        labels = np.asarray(FaceRecordDataset(rec_path, input_size, None, **common).labels)
        train_idx, val_idx = train_val_split(labels, cfg.val_fraction, seed)
    else:
        train_idx, val_idx = np.arange(num_images, dtype=np.int64), np.empty(0, dtype=np.int64)
    cache = len(train_idx) <= CACHE_DECODED_MAX_IMAGES
    train_ds = FaceRecordDataset(rec_path, input_size, params.augment, indices=train_idx, cache_decoded=cache, **common)
    train_idx = np.asarray(train_ds.indices, dtype=np.int64)  # without images skipped as corrupt
    loader = build_loader(train_ds, cfg.batch_size, shuffle=True, drop_last=True, num_workers=cfg.num_workers,
                          device=device, seed=seed)
    if len(loader) == 0:
        raise ConfigError(
            f"run {resolved.name!r}: {len(train_idx)} training images give no full batch of "
            f"train.batch_size = {cfg.batch_size}; lower the batch size"
        )
    val_loader = None
    if cfg.selection == "val" and len(val_idx) == 0:
        raise ConfigError(f"run {resolved.name!r}: val_fraction {cfg.val_fraction} held out no image "
                          "(every identity has a single image?)")
    if len(val_idx):
        val_ds = FaceRecordDataset(rec_path, input_size, None, indices=val_idx,
                                   cache_decoded=len(val_idx) <= CACHE_DECODED_MAX_IMAGES, **common)
        val_loader = build_loader(val_ds, max(cfg.batch_size, 64), shuffle=False, drop_last=False,
                                  num_workers=cfg.num_workers, device=device, seed=seed)
    scores_path = Path(params.quality.output_dir) / "scores.parquet"
    iq_table = load_iq_table(scores_path, num_images) if scores_path.exists() else None
    gt_table = load_gt_quality(prepared / "train_meta.parquet", num_images)
    return _Data(rec_path, reader, num_images, num_classes, train_idx, val_idx, train_ds, loader, val_loader,
                 gt_table, iq_table, scores_path, cache)


def _build_probe(params: Params, resolved: ResolvedRun, data: _Data, seed: int) -> ProbeSet:
    from marginlab.data.augment import AdaFaceAugment

    if data.gt_table is not None:
        quality = data.gt_table[data.train_idx]
    elif data.iq_table is not None:
        quality = data.iq_table[data.train_idx]
    else:
        quality = None
    indices = select_probe(data.train_idx, resolved.train.probe_size, seed, quality)
    return ProbeSet.from_reader(
        data.reader, indices, input_size=resolved.model.input_size, channel_order=params.data.channel_order,
        augment=AdaFaceAugment(params.augment), seed=seed, iq_table=data.iq_table, gt_table=data.gt_table,
    )


def _fingerprint(params: Params, resolved: ResolvedRun, data: _Data, steps_per_epoch: int) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (configuration and data identity)."""
    return {
        "resolved_run": resolved.model_dump(mode="json"),
        "params_seed": params.seed,
        "augment": params.augment.model_dump(mode="json"),
        "channel_order": params.data.channel_order,
        "num_images": data.num_images,
        "num_classes": data.num_classes,
        "rec_bytes": data.rec_path.stat().st_size,
        "train_images": int(len(data.train_idx)),
        "steps_per_epoch": steps_per_epoch,
    }


# --------------------------------------------------------------------------- resume helpers
def _load_resumable(ckpt_path: Path, fingerprint: dict, run_name: str) -> Optional[dict]:
    if not ckpt_path.exists():
        return None
    state = load_checkpoint(ckpt_path)
    if state.get("fingerprint") != fingerprint:
        old = state.get("fingerprint") or {}
        changed = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        log.warning("run %s: %s belongs to another configuration (differs in %s); starting over",
                    run_name, ckpt_path, ", ".join(changed))
        return None
    return state


def _clear_outputs(run_dir: Path) -> None:
    """A fresh start: remove the previous run's products so nothing stale is mixed in."""
    for name in ("checkpoint.pt", "model.pt", "train_summary.json"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "probe", ignore_errors=True)


def _restore_probe_files(run_dir: Path, tables: dict[int, bytes]) -> None:
    for epoch, blob in tables.items():
        if not probe_path(run_dir, epoch).exists():
            write_probe(run_dir, epoch, pd.read_parquet(io.BytesIO(blob)))


def _open_logger(live_dir: Path, progress: _Progress) -> EpochLogger:
    """Continue the dvclive history when it matches the checkpoint, else rewrite it from the checkpoint."""
    done = progress.epoch
    if done > 0:
        truncate_history(live_dir, keep_below=done + 1)
        if logged_steps(live_dir) == set(range(1, done + 1)):
            return EpochLogger(live_dir, resume=True)
    logger = EpochLogger(live_dir, resume=False)
    for i, metrics in enumerate(progress.history, start=1):
        logger.log(i, metrics)
    return logger


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- epoch
def _train_epoch(
    epoch: int, epochs: int, data: _Data, backbone: nn.Module, head: nn.Module, proxy, optimizer, scheduler, scaler,
    hooks: TrainHooks, rs: RunState, *, device: torch.device, amp_dtype, channels_last: bool,
    grad_clip: Optional[float], run_name: str, ckpt_path: Path, last_good: int,
) -> dict[str, float]:
    backbone.train()
    head.train()
    data.train_ds.set_epoch(epoch)  # selects the epoch's shuffle order and augmentation draws
    n_steps = len(data.loader)
    check_every = 1 if device.type == "cpu" else 25
    losses = torch.zeros(n_steps, device=device)
    # running sums on the device (no per-step host sync): ce, correct, norm, norm², loss
    sums = torch.zeros(5, device=device, dtype=torch.float64)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    lr_used = optimizer.param_groups[0]["lr"]
    seen = 0
    t0 = time.perf_counter()
    bar = tqdm(data.loader, total=n_steps, desc=f"{run_name} {epoch}/{epochs}", unit="batch",
               leave=False, dynamic_ncols=True, mininterval=1.0)
    for step, batch in enumerate(bar):
        if hooks.on_step is not None:
            hooks.on_step(epoch, step, rs)
        x = batch["image"].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = batch["label"].to(device, non_blocking=True).long()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            z = backbone(x)
        z = z.float()
        if check_every == 1 and not bool(torch.isfinite(z).all()):  # before the proxy/head reject it
            losses[step] = float("nan")
            _check_losses(losses[: step + 1], run_name, epoch, ckpt_path, last_good, what="the embeddings are")
        quality = proxy(head, z, y, batch["index"])
        logits = head(z, y, quality)
        ce = F.cross_entropy(logits.float(), y)
        loss = ce + head.regularizer(z)
        losses[step] = loss.detach()
        if (step + 1) % check_every == 0 or step == n_steps - 1:
            _check_losses(losses[: step + 1], run_name, epoch, ckpt_path, last_good)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        lr_used = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        rs.global_step += 1
        with torch.no_grad():
            zd = z.detach()
            cos = F.linear(F.normalize(zd, dim=1), F.normalize(head.weight.detach().float(), dim=1))
            norms = zd.norm(dim=1).double()
            sums += torch.stack([
                ce.detach().double() * len(y), (cos.argmax(dim=1) == y).sum().double(),
                norms.sum(), (norms**2).sum(), loss.detach().double() * len(y),
            ])
        seen += len(y)
        if device.type == "cpu" and step % 10 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    ce_sum, correct, norm_sum, norm_sq, loss_sum = (float(v) for v in sums.cpu())
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


def _check_losses(
    losses: torch.Tensor, run_name: str, epoch: int, ckpt_path: Path, last_good: int, what: str = "the loss is"
) -> None:
    finite = torch.isfinite(losses)
    if bool(finite.all()):
        return
    step = int((~finite).nonzero()[0, 0])
    value = float(losses[step])
    raise TrainingDivergedError(
        f"run {run_name!r}: {what} {value} at epoch {epoch}, step {step}; training stopped. "
        f"{_what_is_kept(ckpt_path, last_good)}. {_DIVERGENCE_ADVICE}"
    )


_DIVERGENCE_ADVICE = "Lower train.lr, set train.grad_clip or add warm-up (train.warmup_epochs)."


def _what_is_kept(ckpt_path: Path, last_good: int) -> str:
    """What a diverged run leaves on disk, as it is (checkpoints are written at the end of each epoch)."""
    if last_good > 0 and ckpt_path.exists():
        return f"The checkpoint {ckpt_path} of the last good epoch ({last_good}) is kept"
    return (f"No checkpoint exists yet ({ckpt_path} is written at the end of each completed epoch), "
            "so the next run starts from scratch")


def _check_weights_finite(backbone, head, run_name, epoch, ckpt_path, last_good) -> None:
    for name, module in (("backbone", backbone), ("head", head)):
        for pname, p in module.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise TrainingDivergedError(
                    f"run {run_name!r}: {name} parameter {pname} is not finite at the end of epoch {epoch}; "
                    f"training stopped. {_what_is_kept(ckpt_path, last_good)}. {_DIVERGENCE_ADVICE}"
                )


@torch.no_grad()
def _validation_accuracy(backbone, head, loader, device, amp_dtype, channels_last) -> float:
    was = backbone.training
    backbone.eval()
    embs, labels = [], []
    try:
        for batch in loader:
            x = batch["image"].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                embs.append(backbone(x).float())
            labels.append(batch["label"])
    finally:
        backbone.train(was)
    return centre_accuracy(torch.cat(embs), head.weight, torch.cat(labels).to(device))


def _epoch_line(run_name: str, epoch: int, epochs: int, m: dict[str, float]) -> str:
    parts = [f"{run_name} epoch {epoch}/{epochs}", f"loss {m['train/loss']:.4f}", f"acc {m['train/acc']:.3f}",
             f"lr {m['train/lr']:.2e}", f"norm {m['train/norm_mean']:.2f}±{m['train/norm_std']:.2f}",
             f"{m['train/images_per_s']:.0f} img/s"]
    if "val/acc" in m:
        parts.append(f"val acc {m['val/acc']:.3f}")
    return " | ".join(parts)


# --------------------------------------------------------------------------- end of run
def _finish(run_dir: Path, params: Params, resolved: ResolvedRun, data: _Data, backbone, head, progress: _Progress,
            steps_per_epoch: int, *, device, amp_dtype, channels_last, threads, seed, live_backend,
            call_seconds: float) -> dict:
    cfg = resolved.train
    if cfg.selection == "val" and progress.best is not None:
        sel_epoch, b_state, h_state = progress.best["epoch"], progress.best["backbone"], progress.best["head"]
    else:
        sel_epoch, b_state, h_state = progress.epoch, backbone.state_dict(), head.state_dict()
    save_model(run_dir / "model.pt", backbone_state=b_state, head_state=h_state, resolved=resolved,
               num_classes=data.num_classes, channel_order=params.data.channel_order, epoch=sel_epoch,
               selection=cfg.selection)
    last = progress.history[-1] if progress.history else {}
    images = sum(m["train/images_per_s"] * m["train/seconds"] for m in progress.history)
    train_seconds = sum(m["train/seconds"] for m in progress.history)
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    summary = {
        "run": resolved.name,
        "head": resolved.head,
        "proxy": resolved.proxy,
        "backbone": resolved.model.backbone,
        "epochs": progress.epoch,
        "steps_per_epoch": steps_per_epoch,
        "global_steps": progress.global_step,
        "train_images": int(len(data.train_idx)),
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
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "amp": runtime.amp_name(amp_dtype),
        "channels_last": channels_last,
        "threads": threads,
        "num_workers": cfg.num_workers,
        "cache_decoded": data.cache_decoded,
        "seed": seed,
        "peak_rss_mb": self_rss,
        "peak_rss_children_mb": child_rss,
        "resumed_from_epoch": progress.resumed_from,
        "live_backend": live_backend,
        "torch": torch.__version__,
    }
    write_json(run_dir / "train_summary.json", summary)
    return summary
