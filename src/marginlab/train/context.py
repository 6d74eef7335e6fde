"""The training run context: everything one run needs, built once, in one small object.

:func:`build_context` turns a :class:`~marginlab.train.job.TrainJob` into a :class:`TrainContext`: the resolved run
(:class:`~marginlab.core.config.ResolvedRun`), the execution settings (device, AMP dtype, memory format,
threads, seed), the data (:class:`TrainData`: the prepared RecordIO opened once, the loaders, the IQ
and ground-truth tables), the modules, optimiser, schedule, gradient scaler and quality proxy. The
epoch loop (:mod:`.loop`) and the callbacks (:mod:`.callbacks`) take only the context, so no list of a
dozen parameters travels between them and nothing reads ``params`` after this point.

The order of construction is the order of random draws (data split, weight initialisation, probe
choice), so it is kept exactly: the same seed gives the same run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from marginlab.core.config import AugmentConfig, ConfigError, ResolvedRun, TrainConfig
from marginlab.train.input.datasets import FaceRecordDataset, build_loader, first_identities, move_batch, train_val_split
from marginlab.data.formats import open_recordio
from marginlab.core.device import resolve_device
from marginlab.core.layouts import RunLayout
from marginlab.models import build_modules
from marginlab.train import runtime
from marginlab.train.compiled import compile_backbone
from marginlab.train.distributed import SINGLE, DistEnv, gather_concat, worker_device
from marginlab.train.job import TrainJob
from marginlab.train.network import TrainingNetwork
from marginlab.train.optim import build_optimizer, build_schedule, build_scheduler
from marginlab.train.probe import load_gt_quality
from marginlab.train.probe_schedule import ProbeSchedule, probe_schedule
from marginlab.train.proxy import QualityProxy, build_proxy, load_iq_table
from marginlab.train.sync_batchnorm import convert_sync_batchnorm

#: Training sets up to this many images are decoded once and kept in memory (≈ 7.5 GB at 112×112).
CACHE_DECODED_MAX_IMAGES = 200_000


@dataclass
class TrainData:
    """The prepared training set: the reader (opened once), loaders and per-image tables."""

    rec_path: Path
    reader: Any
    num_images: int
    num_classes: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    train_ds: FaceRecordDataset
    loader: Any
    val_loader: Any
    gt_table: Optional[np.ndarray]
    iq_table: Optional[np.ndarray]
    scores_path: Path
    cache_decoded: bool


@dataclass
class TrainContext:
    """One run: configuration, execution settings, data, modules and optimisation state."""

    name: str
    run_dir: Path
    resolved: ResolvedRun
    seed: int
    device: torch.device
    amp_dtype: Optional[torch.dtype]
    channels_last: bool
    threads: int
    channel_order: str
    augment: AugmentConfig
    data: TrainData
    backbone: nn.Module
    head: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    proxy: QualityProxy
    network: nn.Module  # TrainingNetwork, wrapped in DistributedDataParallel when dist.active
    dist: DistEnv
    fingerprint: dict[str, Any]

    @property
    def cfg(self) -> TrainConfig:
        return self.resolved.train

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def checkpoint_path(self) -> Path:
        return self.layout.checkpoint

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data.loader)

    @property
    def probe_schedule(self) -> ProbeSchedule:
        """The steps of the progress probes (``train.probe_progress`` over this run's optimiser steps)."""
        return probe_schedule(self.cfg.probe_progress, self.cfg.epochs * self.steps_per_epoch, self.cfg.batch_size)

    @property
    def loader_generator(self) -> Optional[torch.Generator]:
        return getattr(self.data.loader, "generator", None)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the backbone's forward pass (a no-op when AMP is off)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(images, labels, indices)`` of a loader batch on the run's device (images in its memory format)."""
        moved = move_batch(batch, self.device, channels_last=self.channels_last)
        return moved["image"], moved["label"].long(), batch["index"]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's embeddings of device inputs ``x`` as float32 (under autocast when enabled)."""
        with self.autocast():
            return self.backbone(x).float()


def build_context(job: TrainJob, dist_env: DistEnv = SINGLE) -> TrainContext:
    """The context of ``job``'s run; seeds every generator first (call inside ``runtime.determinism``).

    ``dist_env``: this process's place in a data-parallel group (joined already); every process builds
    the same modules from the same seed, loads its shard of each global batch, and trains through
    ``DistributedDataParallel``.
    """
    resolved, run_name = job.run, job.name
    cfg = resolved.train
    if cfg.selection == "val" and cfg.val_fraction <= 0:
        raise ConfigError(
            f"run {run_name!r}: train.selection is 'val' but train.val_fraction is {cfg.val_fraction}; "
            "set a held-out fraction of the training identities' images (e.g. 0.1) or use selection 'last'"
        )
    run_dir = job.run_layout.root
    run_dir.mkdir(parents=True, exist_ok=True)
    seed = runtime.derive_seed(job.params_seed, resolved.seed)
    device = worker_device(resolve_device(cfg.device), dist_env)
    if cfg.batch_size % dist_env.world_size:
        raise ConfigError(f"run {run_name!r}: train.batch_size {cfg.batch_size} (the global batch) does not divide "
                          f"over {dist_env.world_size} data-parallel processes")
    threads = runtime.set_threads(cfg.threads, processes=dist_env.local_world_size if device.type == "cpu" else 1)
    amp_dtype = runtime.resolve_amp(cfg.amp, device)
    channels_last = runtime.use_channels_last(cfg.channels_last, device)
    runtime.seed_everything(seed)
    data = load_train_data(job, seed, device, dist_env)
    backbone, head = build_modules(resolved, data.num_classes)
    if dist_env.active and cfg.distributed.sync_batchnorm:
        backbone = convert_sync_batchnorm(backbone, device)
    if dist_env.active and cfg.distributed.sync_head_stats:
        head.batch_gather = gather_concat
    backbone.to(device)
    head.to(device)
    if channels_last:
        backbone.to(memory_format=torch.channels_last)
    optimizer = build_optimizer([backbone, head], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    schedule = build_schedule(cfg.milestones, cfg.lr_gamma, cfg.warmup_epochs, cfg.epochs, len(data.loader))
    proxy = build_proxy(resolved.proxy, scores_path=data.scores_path, num_images=data.num_images,
                        train_indices=data.train_idx)
    # train.compile: the training forward may go through torch.compile; ctx.backbone stays the plain module
    # (state dict, optimiser, probe and validation), and DDP wraps the compiled one (PyTorch's advice).
    train_backbone = compile_backbone(backbone, mode=cfg.compile, device=device,
                                      steps_total=cfg.epochs * len(data.loader),
                                      batch_size=cfg.batch_size // dist_env.world_size)
    network: nn.Module = TrainingNetwork(train_backbone, head, proxy, amp_dtype=amp_dtype, device_type=device.type)
    if dist_env.active:
        network = torch.nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None)  # buffers synced from rank 0
    ctx = TrainContext(
        name=run_name, run_dir=run_dir, resolved=resolved, seed=seed, device=device, amp_dtype=amp_dtype,
        channels_last=channels_last, threads=threads, channel_order=job.channel_order,
        augment=job.augment, data=data, backbone=backbone, head=head, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, schedule),
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16), proxy=proxy,
        network=network, dist=dist_env, fingerprint={},
    )
    ctx.fingerprint = fingerprint(job, ctx)
    return ctx


def load_train_data(job: TrainJob, seed: int, device: torch.device, dist_env: DistEnv = SINGLE) -> TrainData:
    """Open the prepared RecordIO once, keep the run's identities (``train.identities``: the first N in label
    order, :func:`~marginlab.train.input.datasets.first_identities`), split off the validation images among them,
    build the loaders and tables. ``num_classes`` is the number of kept identities (the head's classes).

    Under data parallelism every process reads its share of each global batch (``ShardedBatchSampler``);
    the decoded cache is kept when all processes of a node together stay within the cache limit.
    """
    resolved = job.run
    cfg = resolved.train
    prepared = job.prepared
    rec_path = prepared.train_rec
    if not rec_path.exists():
        raise FileNotFoundError(
            f"training data {rec_path} not found (data.prepared_dir = {str(prepared.root)!r}); "
            "run the prepare stage first: python -m marginlab prepare"
        )
    reader = open_recordio(rec_path, skip_corrupt=job.skip_corrupt)
    num_images = len(reader)
    num_classes = _trained_identities(job, int(reader.num_classes), rec_path)
    input_size = resolved.model.input_size
    common = dict(channel_order=job.channel_order, skip_corrupt=job.skip_corrupt, seed=seed)
    labels = np.asarray(reader.labels)
    kept = first_identities(labels, cfg.identities)
    if cfg.val_fraction > 0:
        train_pos, val_pos = train_val_split(labels[kept], cfg.val_fraction, seed)
        train_idx, val_idx = kept[train_pos], kept[val_pos]
    else:
        train_idx, val_idx = kept, np.empty(0, dtype=np.int64)
    cache = len(train_idx) * dist_env.local_world_size <= CACHE_DECODED_MAX_IMAGES
    train_ds = FaceRecordDataset(rec_path, input_size, job.augment, indices=train_idx, cache_decoded=cache, **common)
    train_idx = np.asarray(train_ds.indices, dtype=np.int64)  # without images skipped as corrupt
    loader = build_loader(train_ds, cfg.batch_size, shuffle=True, drop_last=True, num_workers=cfg.num_workers,
                          device=device, seed=seed, rank=dist_env.rank, world_size=dist_env.world_size)
    if len(loader) == 0:
        raise ConfigError(
            f"run {resolved.name!r}: {len(train_idx)} training images give no full batch of "
            f"train.batch_size = {cfg.batch_size}; lower the batch size"
        )
    if cfg.selection == "val" and len(val_idx) == 0:
        raise ConfigError(f"run {resolved.name!r}: val_fraction {cfg.val_fraction} held out no image "
                          "(every identity has a single image?)")
    val_loader = None
    if len(val_idx) and dist_env.is_main:  # validation runs on rank 0 only
        val_ds = FaceRecordDataset(rec_path, input_size, None, indices=val_idx,
                                   cache_decoded=len(val_idx) <= CACHE_DECODED_MAX_IMAGES, **common)
        val_loader = build_loader(val_ds, max(cfg.batch_size, 64), shuffle=False, drop_last=False,
                                  num_workers=cfg.num_workers, device=device, seed=seed)
    scores_path = job.scores_path
    iq_table = load_iq_table(scores_path, num_images) if scores_path.exists() else None
    gt_table = load_gt_quality(prepared.train_meta, num_images)
    return TrainData(rec_path, reader, num_images, num_classes, train_idx, val_idx, train_ds, loader, val_loader,
                     gt_table, iq_table, scores_path, cache)


def _trained_identities(job: TrainJob, available: int, rec_path: Path) -> int:
    """The head's number of classes: ``train.identities`` of the run, checked against ``rec_path``, or all."""
    wanted = job.run.train.identities
    if wanted is None:
        return available
    if wanted > available:
        raise ConfigError(
            f"{job.identities_key} = {wanted}, but {rec_path} holds {available} identities; "
            "lower it or set it to null (all identities)"
        )
    return wanted


def fingerprint(job: TrainJob, ctx: TrainContext) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (configuration and data identity)."""
    resolved = ctx.resolved.model_dump(mode="json")
    resolved["train"].pop("distributed")  # a checkpoint resumes with any number of processes
    resolved["train"].pop("compile")  # and with or without a compiled forward (same weights)
    return {
        "resolved_run": resolved,
        "params_seed": job.params_seed,
        "augment": job.augment.model_dump(mode="json"),
        "channel_order": job.channel_order,
        "num_images": ctx.data.num_images,
        "num_classes": ctx.data.num_classes,
        "rec_bytes": ctx.data.rec_path.stat().st_size,
        "train_images": int(len(ctx.data.train_idx)),
        "steps_per_epoch": ctx.steps_per_epoch,
    }
