"""What a run does around its epochs, as callbacks on the :class:`~.context.TrainContext`.

The epoch loop (:mod:`.loop`) calls, in this order, for every callback of :func:`default_callbacks`:

* ``start(ctx, progress)`` once, after a checkpoint was restored (or not);
* ``step_end(ctx, progress, epoch, step)`` right after the optimiser step that brings the run to a step
  of the progress-probe schedule (:mod:`.probe_schedule`), inside the epoch;
* ``measure(ctx, progress, epoch, metrics)`` after each epoch's training steps, while the epoch's wall
  time still runs (probe tables, validation accuracy);
* ``record(ctx, progress, epoch, metrics)`` once the epoch is complete (dvclive, the checkpoint last, so
  it holds everything the others added);
* ``end(ctx, progress)`` after the last epoch.

:class:`Progress` is the state a resumed run restores: epoch, global step, metric history, probe tables
(per epoch and per progress step), best-so-far weights and wall time.
"""

from __future__ import annotations

import io
import logging
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from marginlab.train.input.augment import AdaFaceAugment
from marginlab.core.proxy_specs import PROXY_SPECS
from marginlab.train.checkpoint import (
    CheckpointError,
    capture_rng_state,
    check_resumable,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from marginlab.train.context import TrainContext
from marginlab.train.distributed import barrier
from marginlab.train.live import EpochLogger, logged_steps, truncate_history
from marginlab.train.probe import PASSES, ProbeSet, probe_path, select_probe, write_probe
from marginlab.train.probe_schedule import progress_dir, progress_path, with_progress, write_progress_table
from marginlab.train.selection import centre_accuracy

log = logging.getLogger(__name__)

#: The probe pass measured at progress steps (the correlation analysis uses the clean pass only).
PROGRESS_PASS = "clean"


@dataclass
class Progress:
    """How far a run is; restored from the checkpoint on resume."""

    epoch: int = 0
    global_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    probe_tables: dict[int, bytes] = field(default_factory=dict)
    progress_tables: dict[int, bytes] = field(default_factory=dict)  # step -> the progress probe's parquet bytes
    best: Optional[dict[str, Any]] = None
    wall_time_s: float = 0.0
    resumed_from: Optional[int] = None


class Callback:
    """No-op base: override the phases you need."""

    def start(self, ctx: TrainContext, progress: Progress) -> None: ...

    def step_end(self, ctx: TrainContext, progress: Progress, epoch: int, step: int) -> None: ...

    def measure(self, ctx: TrainContext, progress: Progress, epoch: int, metrics: dict[str, float]) -> None: ...

    def record(self, ctx: TrainContext, progress: Progress, epoch: int, metrics: dict[str, float]) -> None: ...

    def end(self, ctx: TrainContext, progress: Progress) -> None: ...


# --------------------------------------------------------------------------- checkpoint / resume
class Checkpointing(Callback):
    """Writes ``checkpoint.pt`` after every epoch; :meth:`resume` restores a matching one."""

    def resume(self, ctx: TrainContext) -> Progress:
        """Restore ``checkpoint.pt`` into the context when it matches the configuration, else start over."""
        state = self._matching_state(ctx)
        barrier(ctx.dist)  # every process has read the checkpoint before rank 0 may remove it
        if state is None:
            if ctx.dist.is_main:
                clear_outputs(ctx)
            return Progress()
        ctx.backbone.load_state_dict(state["backbone"])  # checked by check_resumable in _matching_state
        ctx.head.load_state_dict(state["head"])
        restorers = {"optimizer": ctx.optimizer.load_state_dict, "scheduler": ctx.scheduler.load_state_dict,
                     "scaler": ctx.scaler.load_state_dict,
                     "rng": lambda rng: restore_rng_state(rng, ctx.loader_generator)}
        for entry, restore in restorers.items():  # what check_resumable does not cover fails by name, too
            try:
                restore(state[entry])
            except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as err:
                reason = " ".join(str(err).split())  # torch's messages span lines; the stage prints one
                raise CheckpointError(f"checkpoint {ctx.checkpoint_path}: its {entry} state cannot be restored "
                                      f"({type(err).__name__}: {reason}); delete it (or train with --no-resume) to "
                                      "start over") from None
        log.info("run %s: resuming after epoch %d of %d", ctx.name, state["epoch"], ctx.cfg.epochs)
        return Progress(epoch=state["epoch"], global_step=state["global_step"], history=list(state["history"]),
                        probe_tables=dict(state["probe_tables"]), progress_tables=dict(state["progress_tables"]),
                        best=state["best"],
                        wall_time_s=state["wall_time_s"], resumed_from=state["epoch"])

    @staticmethod
    def _matching_state(ctx: TrainContext) -> Optional[dict]:
        path = ctx.checkpoint_path
        if not path.exists():
            return None
        state = load_checkpoint(path)
        if state.get("fingerprint") != ctx.fingerprint:
            old = state.get("fingerprint") or {}
            changed = sorted(k for k in set(old) | set(ctx.fingerprint) if old.get(k) != ctx.fingerprint.get(k))
            log.warning("run %s: %s belongs to another configuration (differs in %s); starting over",
                        ctx.name, path, ", ".join(changed))
            return None
        check_resumable(state, path, backbone=ctx.backbone, head=ctx.head, optimizer=ctx.optimizer)
        return state

    def record(self, ctx: TrainContext, progress: Progress, epoch: int, metrics: dict[str, float]) -> None:
        save_checkpoint(ctx.checkpoint_path, {
            "run_name": ctx.name, "fingerprint": ctx.fingerprint,
            "backbone": ctx.backbone.state_dict(), "head": ctx.head.state_dict(),
            "optimizer": ctx.optimizer.state_dict(), "scheduler": ctx.scheduler.state_dict(),
            "scaler": ctx.scaler.state_dict(), "rng": capture_rng_state(ctx.loader_generator),
            "epoch": epoch, "global_step": progress.global_step, "live_step": epoch,
            "history": progress.history, "probe_tables": progress.probe_tables,
            "progress_tables": progress.progress_tables, "best": progress.best,
            "wall_time_s": progress.wall_time_s,
        })


def clear_outputs(ctx: TrainContext) -> None:
    """A fresh start: remove the previous run's products so nothing stale is mixed in."""
    for path in (ctx.layout.checkpoint, ctx.layout.model, ctx.layout.train_summary):
        path.unlink(missing_ok=True)
    shutil.rmtree(ctx.layout.probe_dir, ignore_errors=True)


# --------------------------------------------------------------------------- probe
class Probing(Callback):
    """The fixed probe subset (clean and augmented) measured before training, after every epoch and at the
    steps of the progress schedule (:mod:`.probe_schedule`; one that is an epoch end or step 0 reuses that
    epoch's table, measured with the same weights)."""

    def __init__(self, ctx: TrainContext):
        data = ctx.data
        if data.gt_table is not None:
            quality = data.gt_table[data.train_idx]
        elif data.iq_table is not None:
            quality = data.iq_table[data.train_idx]
        else:
            quality = None
        indices = select_probe(data.train_idx, ctx.cfg.probe_size, ctx.seed, quality)
        self.probe = ProbeSet.from_reader(
            data.reader, indices, input_size=ctx.resolved.model.input_size, channel_order=ctx.channel_order,
            augment=AdaFaceAugment(ctx.augment), seed=ctx.seed, iq_table=data.iq_table, gt_table=data.gt_table,
        )
        self.schedule = ctx.probe_schedule
        for step, fractions in self.schedule.collapsed().items():
            log.info("run %s: train.probe_progress fractions %s all fall on step %d of %d; probed once", ctx.name,
                     ", ".join(f"{f:g}" for f in fractions), step, self.schedule.total_steps)

    def _table(self, ctx: TrainContext, epoch: int, passes: tuple[str, ...] = PASSES) -> pd.DataFrame:
        return self.probe.measure(epoch, ctx.backbone, ctx.head, batch_size=max(ctx.cfg.batch_size, 64),
                                  device=ctx.device, autocast_dtype=ctx.amp_dtype, channels_last=ctx.channels_last,
                                  passes=passes, z_hat_signal=PROXY_SPECS[ctx.resolved.proxy].probe_signal,
                                  recalibrate_batch=(ctx.cfg.batch_size // ctx.dist.world_size
                                                     if ctx.cfg.probe_recalibrate_bn else None))

    def _measure(self, ctx: TrainContext, progress: Progress, epoch: int) -> pd.DataFrame:
        frame = self._table(ctx, epoch)
        write_probe(ctx.run_dir, epoch, frame)
        progress.probe_tables[epoch] = frame_bytes(frame)
        return frame

    def _record_progress(self, ctx: TrainContext, progress: Progress, step: int, frame: pd.DataFrame) -> None:
        """Progress tables hold the clean pass only (what the analysis reads; half the cost inside epochs)."""
        frame = frame[frame["pass"] == PROGRESS_PASS].reset_index(drop=True)
        blob = frame_bytes(with_progress(frame, step, self.schedule))
        write_progress_table(ctx.run_dir, step, blob)
        progress.progress_tables[step] = blob

    def start(self, ctx: TrainContext, progress: Progress) -> None:
        for epoch, blob in progress.probe_tables.items():  # files a pipeline tool deleted
            if not probe_path(ctx.run_dir, epoch).exists():
                write_probe(ctx.run_dir, epoch, pd.read_parquet(io.BytesIO(blob)))
        restore_progress_files(ctx, progress)
        if progress.epoch == 0 and 0 not in progress.probe_tables:
            frame = self._measure(ctx, progress, 0)
            if 0 in self.schedule.steps:  # step 0 = before the first update: the weights of epoch 0
                self._record_progress(ctx, progress, 0, frame)

    def step_end(self, ctx: TrainContext, progress: Progress, epoch: int, step: int) -> None:
        if step % ctx.steps_per_epoch:  # an epoch's last step is measured by measure(), with the same weights
            self._record_progress(ctx, progress, step, self._table(ctx, epoch, passes=(PROGRESS_PASS,)))

    def measure(self, ctx: TrainContext, progress: Progress, epoch: int, metrics: dict[str, float]) -> None:
        frame = self._measure(ctx, progress, epoch)
        if progress.global_step in self.schedule.steps:
            self._record_progress(ctx, progress, progress.global_step, frame)


def restore_progress_files(ctx: TrainContext, progress: Progress) -> None:
    """Make ``probe/progress/`` what the checkpoint holds: rewrite files a pipeline tool deleted (the same
    bytes) and remove those of an interrupted epoch, which the resumed run measures again."""
    kept = {progress_path(ctx.run_dir, step) for step in progress.progress_tables}
    for path in progress_dir(ctx.run_dir).glob("step_*.parquet"):
        if path not in kept:
            path.unlink()
    for step, blob in progress.progress_tables.items():
        if not progress_path(ctx.run_dir, step).exists():
            write_progress_table(ctx.run_dir, step, blob)


def frame_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


# --------------------------------------------------------------------------- validation / selection
class Validation(Callback):
    """``val/acc`` on the held-out images of the training identities; keeps the best epoch's weights."""

    def measure(self, ctx: TrainContext, progress: Progress, epoch: int, metrics: dict[str, float]) -> None:
        if ctx.data.val_loader is None:
            return
        metrics["val/acc"] = validation_accuracy(ctx)
        if progress.best is None or metrics["val/acc"] > progress.best["val_acc"]:
            progress.best = {"epoch": epoch, "val_acc": metrics["val/acc"],
                             "backbone": cpu_state(ctx.backbone), "head": cpu_state(ctx.head)}


@torch.no_grad()
def validation_accuracy(ctx: TrainContext) -> float:
    was = ctx.backbone.training
    ctx.backbone.eval()
    embs, labels = [], []
    try:
        for batch in ctx.data.val_loader:
            x, y, _ = ctx.inputs(batch)
            embs.append(ctx.embed(x))
            labels.append(y)
    finally:
        ctx.backbone.train(was)
    return centre_accuracy(torch.cat(embs), ctx.head, torch.cat(labels))


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- dvclive
class LiveLogging(Callback):
    """dvclive metrics per epoch (step = epoch) and one progress line per epoch on stderr."""

    def __init__(self) -> None:
        self.logger: Optional[EpochLogger] = None

    @property
    def backend(self) -> str:
        return self.logger.backend if self.logger is not None else "none"

    def start(self, ctx: TrainContext, progress: Progress) -> None:
        """Continue the dvclive history when it matches the checkpoint, else rewrite it from the checkpoint."""
        live_dir = ctx.layout.live_dir
        done = progress.epoch
        if done > 0:
            truncate_history(live_dir, keep_below=done + 1)
            if logged_steps(live_dir) == set(range(1, done + 1)):
                self.logger = EpochLogger(live_dir, resume=True)
                return
        self.logger = EpochLogger(live_dir, resume=False)
        for i, metrics in enumerate(progress.history, start=1):
            self.logger.log(i, metrics)

    def record(self, ctx: TrainContext, progress: Progress, epoch: int, metrics: dict[str, float]) -> None:
        assert self.logger is not None
        self.logger.log(epoch, metrics)
        tqdm.write(epoch_line(ctx.name, epoch, ctx.cfg.epochs, metrics), file=sys.stderr)

    def end(self, ctx: TrainContext, progress: Progress) -> None:
        if self.logger is not None:
            self.logger.end()


def epoch_line(run_name: str, epoch: int, epochs: int, m: dict[str, float]) -> str:
    parts = [f"{run_name} epoch {epoch}/{epochs}", f"loss {m['train/loss']:.4f}", f"acc {m['train/acc']:.3f}",
             f"lr {m['train/lr']:.2e}", f"norm {m['train/norm_mean']:.2f}±{m['train/norm_std']:.2f}",
             f"{m['train/images_per_s']:.0f} img/s"]
    if "val/acc" in m:
        parts.append(f"val acc {m['val/acc']:.3f}")
    return " | ".join(parts)
