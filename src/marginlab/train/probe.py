"""The probe: a fixed subset of training images whose embeddings are recorded every epoch.

Selection (:func:`select_probe`): ``probe_size`` training images, seeded, stratified by quality — the
candidates are cut into ``strata`` equal-count quantile bins of the quality value and the same number
of images (±1) is drawn from every bin, so low- and high-quality images are equally represented. The
quality used is, in order of availability, ``gt_quality`` from ``train_meta.parquet`` (synthetic data),
the BRISQUE-based ``iq`` from the quality stage's ``scores.parquet``, or none (uniform random draw).

Each epoch (epoch 0 = before the first update) the probe is embedded twice with the backbone in eval
mode: ``pass = "clean"`` (the stored image, no augmentation) and ``pass = "augmented"`` (the training
augmentations, drawn once from a fixed seed per image, so every epoch sees the same augmented images).

**BatchNorm recalibration** (:func:`recalibrated_backbone`, on by default). Eval mode normalises with
the running statistics, an EMA (momentum 0.1) of past batches that starts at mean 0 / variance 1: after 4
optimiser steps 0.9⁴ = 66 % of every layer's statistics are still that start, and after any step they
lag the weights. Such an eval-mode network is one training never uses (training normalises each batch
with its own statistics), and the last ``BatchNorm1d`` sets the embedding's scale, so the norm measured
early in training would describe that artefact. So the probe embeds with a copy of the backbone whose
BatchNorm statistics are recomputed for the current weights: the population mean and the average
unbiased batch variance (what ``momentum=None`` gives) over the probe's augmented images, i.e.
training images through the training augmentations (at most the larger of 512 images and 4 batches), in
batches of the training batch size drawn in a fixed shuffled order (the probe is sorted by record, so by identity: unshuffled batches would hold one or
two identities and give statistics training never sees), with every
layer normalising those batches by their own statistics as in training. The training backbone is not
touched; no process group is used (rank 0 probes alone, so synchronised BatchNorm layers are run as
plain ones in the copy).

Per image and pass one row of ``probe/epoch_XX.parquet``:

``epoch, pass, index, label, norm, p_yi, cos_y, z_hat, iq, gt_quality, crop, lowres, photometric, flip``

- ``norm`` = ||z||, the L2 norm of the unnormalised embedding z;
- ``cos_y`` = cos θ_y = ŵ_y · ẑ (plain cosine to the target class centre, no margin);
- ``p_yi`` = softmax(s · cos θ)_y with the **plain** logits s · cos θ_j (no margin, s = the head's
  scale), i.e. the classifier's confidence in the target without the margin the loss adds;
- ``z_hat`` = the ẑ ∈ [-1, 1] an AdaFace head would give the image now: its quality signal (the norm, or
  the IQ / P_yi it trains with) against the head's running μ, σ as they are (nothing updated); NaN for
  heads without running norm statistics. Its spread shows whether the margin adapted at all;
- ``iq`` / ``gt_quality``: of the *stored* image (also on the augmented pass, where they therefore
  miss the augmentation — the paper's point about BRISQUE under augmentation); NaN when unknown;
- augmentation flags: what was applied on the augmented pass; all False on the clean pass.
Floats are stored as float32, labels/indices as int32/int64, flags as bool.
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from marginlab.heads import MarginHead
from marginlab.heads.p_yi import p_yi_quality
from marginlab.core.io import write_parquet
from marginlab.core.layouts import RunLayout

FLAG_NAMES = ("crop", "lowres", "photometric", "flip")
#: The probe's passes: the stored images, and the same images through the training augmentations.
PASSES = ("clean", "augmented")
PROBE_COLUMNS = (
    "epoch", "pass", "index", "label", "norm", "p_yi", "cos_y", "z_hat", "iq", "gt_quality", *FLAG_NAMES,
)
#: Images the recalibration uses at most: the larger of these two (a 1,024-image probe recalibrates on 512 of its
#: augmented images at batch 128: the training EMA itself averages ~10 batches; a recalibration pass over all 1,024
#: made a cpu-study run's probes cost as much as its training).
RECALIBRATION_IMAGES = 512
RECALIBRATION_BATCHES = 4
#: Seed of the fixed shuffle of the recalibration batches (any fixed value: the order is part of the probe's definition).
RECALIBRATION_SEED = 22
#: The quality signals an AdaFace head can train with (``runs.<name>.proxy``); the probe's ẑ uses the same one.
Z_HAT_SIGNALS = ("norm", "iq", "p_yi")


def select_probe(
    candidates: np.ndarray,
    size: int,
    seed: int,
    quality: Optional[np.ndarray] = None,
    strata: int = 8,
) -> np.ndarray:
    """Sorted reader indices of the probe, drawn from ``candidates`` (see the module docstring).

    ``quality`` (same length as ``candidates``, NaN = unknown) stratifies the draw into ``strata``
    quantile bins; images with unknown quality are only used when the known ones do not suffice.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if size >= len(candidates):
        return np.sort(candidates)
    if quality is None:
        return np.sort(rng.choice(candidates, size=size, replace=False))
    quality = np.asarray(quality, dtype=np.float64)
    if quality.shape != candidates.shape:
        raise ValueError(f"quality has shape {quality.shape}, candidates {candidates.shape}")
    known = np.isfinite(quality)
    if known.sum() < size:
        chosen = list(candidates[known])
        rest = candidates[~known]
        chosen += list(rng.choice(rest, size=size - len(chosen), replace=False))
        return np.sort(np.asarray(chosen, dtype=np.int64))
    cand, q = candidates[known], quality[known]
    # Equal-count bins over the quality ranking (ties broken by a random permutation, so they are seeded).
    order = np.lexsort((rng.permutation(len(q)), q))
    bins = np.array_split(order, min(strata, size))
    per_bin = np.full(len(bins), size // len(bins))
    per_bin[rng.permutation(len(bins))[: size - per_bin.sum()]] += 1
    chosen = [rng.choice(cand[b], size=min(k, len(b)), replace=False) for b, k in zip(bins, per_bin)]
    picked = np.concatenate(chosen)
    short = size - len(picked)
    if short > 0:  # a bin smaller than its quota (tiny candidate sets): fill from the rest
        rest = np.setdiff1d(cand, picked)
        picked = np.concatenate([picked, rng.choice(rest, size=short, replace=False)])
    return np.sort(picked)


def load_gt_quality(meta_path: str | Path, num_images: int) -> Optional[np.ndarray]:
    """``gt_quality`` per reader index from ``train_meta.parquet``, or None if absent / no such column."""
    meta_path = Path(meta_path)
    if not meta_path.exists():
        return None
    frame = pd.read_parquet(meta_path)
    if "gt_quality" not in frame.columns:
        return None
    if "index" not in frame.columns:
        raise ValueError(f"{meta_path} has gt_quality but no 'index' column (reader position of each image)")
    idx = frame["index"].to_numpy(dtype=np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= num_images):
        raise ValueError(f"{meta_path}: index outside 0..{num_images - 1} (does it belong to this train.rec?)")
    out = np.full(num_images, np.nan, dtype=np.float32)
    out[idx] = frame["gt_quality"].to_numpy(dtype=np.float32)
    return out


@torch.no_grad()
def embed(
    backbone: nn.Module,
    inputs: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    autocast_dtype: Optional[torch.dtype] = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Embeddings (N, D) float32 on the CPU of normalised model inputs (N, 3, S, S), backbone in eval mode."""
    was_training = backbone.training
    backbone.eval()
    try:
        out = [z.float().cpu() for z in _forward_batches(backbone, inputs, range(0, len(inputs), batch_size), batch_size,
                                                         device, autocast_dtype, channels_last)]
    finally:
        backbone.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def _forward_batches(module: nn.Module, inputs: torch.Tensor, starts, batch_size: int, device: torch.device,
                     autocast_dtype: Optional[torch.dtype], channels_last: bool):
    """``module``'s output for each batch ``inputs[start : start + batch_size]``, moved to ``device`` (channels_last
    and autocast as asked): the one batch loop of :func:`embed` and :func:`recalibrated_backbone`."""
    for start in starts:
        x = inputs[start : start + batch_size].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            yield module(x)


class _BatchStatistics:
    """Forward pre-hook for one BatchNorm layer of the copy: normalise with the batch's own statistics (as
    training does) and accumulate them; :meth:`finish` writes their averages as the running statistics."""

    def __init__(self, bn: _BatchNorm):
        self.bn, self.sum_mean, self.sum_var, self.batches = bn, None, None, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        dims = [0, *range(2, x.dim())]
        count = x.numel() // x.shape[1]
        var, mean = torch.var_mean(x, dims, correction=0)  # one pass over the activations
        unbiased = var * (count / max(count - 1, 1))
        self.sum_mean = mean if self.sum_mean is None else self.sum_mean + mean
        self.sum_var = unbiased if self.sum_var is None else self.sum_var + unbiased
        self.batches += 1
        return torch.nn.functional.batch_norm(x, mean, var, bn.weight, bn.bias, training=False, eps=bn.eps)

    def finish(self) -> None:
        if self.batches and self.bn.running_mean is not None:
            self.bn.running_mean.copy_(self.sum_mean / self.batches)
            self.bn.running_var.copy_(self.sum_var / self.batches)


@torch.no_grad()
def recalibrated_backbone(
    backbone: nn.Module,
    inputs: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    autocast_dtype: Optional[torch.dtype] = None,
    channels_last: bool = False,
) -> nn.Module:
    """A copy of ``backbone`` in eval mode whose BatchNorm running statistics are recomputed for its
    current weights from ``inputs`` (module docstring); ``backbone`` itself is unchanged. A backbone
    without BatchNorm layers is returned as it is (nothing to recalibrate)."""
    layers = [m for m in backbone.modules() if isinstance(m, _BatchNorm)]
    if not layers or not len(inputs):
        return backbone
    copy = deepcopy(backbone).eval()
    stats = []
    for bn in (m for m in copy.modules() if isinstance(m, _BatchNorm)):
        st = _BatchStatistics(bn)
        bn.forward = st.forward  # instance attribute: the copy only, no process group, batch statistics
        stats.append(st)
    full = range(0, len(inputs) - batch_size + 1 if len(inputs) >= batch_size else 1, batch_size)  # whole batches
    for _ in _forward_batches(copy, inputs, full, batch_size, device, autocast_dtype, channels_last):
        pass  # the hooks accumulate each layer's batch statistics
    for st in stats:
        st.finish()
        del st.bn.forward  # back to the class's eval-mode forward with the new running statistics
    return copy


@torch.no_grad()
def plain_target_stats(embeddings: torch.Tensor, head: MarginHead, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """``norm``, ``cos_y`` (:meth:`MarginHead.cosine`) and ``p_yi = softmax(s·cos θ)_y`` with the head's own
    scale and no margin (:func:`marginlab.heads.p_yi.p_yi_quality`, the function the P_yi proxy trains with)."""
    z = embeddings.float().to(head.weight.device)
    labels = labels.long().to(z.device)
    cos = head.cosine(z).float().clamp(-1, 1)
    return {
        "norm": z.norm(dim=1),
        "cos_y": cos.gather(1, labels[:, None])[:, 0],
        "p_yi": p_yi_quality(head, z, labels),
    }


class ProbeSet:
    """The probe images (clean and augmented model inputs) and their per-image metadata."""

    def __init__(
        self,
        indices: np.ndarray,
        labels: np.ndarray,
        clean: torch.Tensor,
        augmented: torch.Tensor,
        flags: np.ndarray,
        iq: Optional[np.ndarray] = None,
        gt_quality: Optional[np.ndarray] = None,
    ):
        n = len(indices)
        if not (len(labels) == len(clean) == len(augmented) == len(flags) == n):
            raise ValueError("probe arrays have different lengths")
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.clean = clean
        self.augmented = augmented
        self.flags = np.asarray(flags, dtype=bool).reshape(n, len(FLAG_NAMES))
        nan = np.full(n, np.nan, dtype=np.float32)
        self.iq = nan if iq is None else np.asarray(iq, dtype=np.float32)
        self.gt_quality = nan if gt_quality is None else np.asarray(gt_quality, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.indices)

    @classmethod
    def from_reader(
        cls,
        reader,
        indices: np.ndarray,
        *,
        input_size: int,
        channel_order: str,
        augment,
        seed: int,
        iq_table: Optional[np.ndarray] = None,
        gt_table: Optional[np.ndarray] = None,
    ) -> ProbeSet:
        """Decode the probe images from a RecordIO reader; augment each with ``rng = default_rng([seed, index])``."""
        from marginlab.data.model_input import to_model_input
        from marginlab.data.formats import decode_image

        indices = np.asarray(indices, dtype=np.int64)
        images, augmented, labels, flags = [], [], [], []
        for i in indices:
            data, label = reader[int(i)]
            img = decode_image(data, source=f"train record {int(i)}")
            images.append(img)
            labels.append(int(label))
            if augment is not None:
                aug_img, f = augment(img, np.random.default_rng([seed, int(i)]))
                augmented.append(aug_img)
                flags.append([bool(f.get(k, False)) for k in FLAG_NAMES])
            else:
                augmented.append(img)
                flags.append([False] * len(FLAG_NAMES))
        clean = to_model_input(np.stack(images), input_size, channel_order) if len(images) else torch.empty(0)
        aug = to_model_input(np.stack(augmented), input_size, channel_order) if len(images) else torch.empty(0)
        return cls(
            indices, np.asarray(labels), clean, aug, np.asarray(flags, dtype=bool).reshape(-1, len(FLAG_NAMES)),
            iq=None if iq_table is None else iq_table[indices],
            gt_quality=None if gt_table is None else gt_table[indices],
        )

    def measure(
        self,
        epoch: int,
        backbone: nn.Module,
        head: nn.Module,
        *,
        batch_size: int,
        device: torch.device,
        autocast_dtype: Optional[torch.dtype] = None,
        channels_last: bool = False,
        passes: tuple[str, ...] = PASSES,
        recalibrate_batch: Optional[int] = None,
        z_hat_signal: str = "norm",
    ) -> pd.DataFrame:
        """Embed ``passes`` (default both) with the current weights and return the probe rows of ``epoch``.

        ``recalibrate_batch``: the training batch size; the BatchNorm statistics are recomputed in batches
        of it over the augmented probe images first (:func:`recalibrated_backbone`); None = the running
        statistics as they are. ``z_hat_signal``: the quality signal the head trains with (``norm``,
        ``iq`` or ``p_yi``), for the ``z_hat`` column."""
        unknown = set(passes) - set(PASSES)
        if unknown:
            raise ValueError(f"unknown probe pass(es) {sorted(unknown)}; expected some of {PASSES}")
        if z_hat_signal not in Z_HAT_SIGNALS:
            raise ValueError(f"z_hat_signal must be one of {Z_HAT_SIGNALS}, got {z_hat_signal!r}")
        if recalibrate_batch is not None:
            # In a fixed shuffled order, as the training loader's batches: the probe is sorted by record, i.e. by
            # identity, so batches in that order would hold one or two identities each and their statistics
            # (and so the recalibrated network) would be far from training's (measured: norms 2× too large).
            order = torch.as_tensor(np.random.default_rng(RECALIBRATION_SEED).permutation(len(self)))
            order = order[: max(RECALIBRATION_IMAGES, RECALIBRATION_BATCHES * recalibrate_batch)]
            backbone = recalibrated_backbone(backbone, self.augmented[order], batch_size=recalibrate_batch,
                                             device=device, autocast_dtype=autocast_dtype, channels_last=channels_last)
        labels = torch.as_tensor(self.labels)
        frames = []
        for name, inputs in (("clean", self.clean), ("augmented", self.augmented)):
            if name not in passes:
                continue
            z = embed(backbone, inputs, batch_size=batch_size, device=device,
                      autocast_dtype=autocast_dtype, channels_last=channels_last)
            st = plain_target_stats(z, head, labels)
            z_hat = self._z_hat(head, st, z_hat_signal)
            n = len(self)
            frame = pd.DataFrame({
                "epoch": np.full(n, epoch, dtype=np.int32),
                "pass": name,
                "index": self.indices,
                "label": self.labels.astype(np.int32),
                "norm": st["norm"].numpy().astype(np.float32),
                "p_yi": st["p_yi"].numpy().astype(np.float32),
                "cos_y": st["cos_y"].numpy().astype(np.float32),
                "z_hat": z_hat,
                "iq": self.iq,
                "gt_quality": self.gt_quality,
            })
            for k, flag in enumerate(FLAG_NAMES):
                frame[flag] = self.flags[:, k] if name == "augmented" else np.zeros(n, dtype=bool)
            frames.append(frame)
        out = pd.concat(frames, ignore_index=True)
        out["pass"] = pd.Categorical(out["pass"], categories=sorted(PASSES))  # the same categories whatever was measured
        return out[list(PROBE_COLUMNS)]


    def _z_hat(self, head: nn.Module, st: dict[str, torch.Tensor], signal: str) -> np.ndarray:
        z_hat_of = getattr(head, "z_hat_of", None)
        if z_hat_of is None:
            return np.full(len(self), np.nan, dtype=np.float32)
        if signal == "norm":
            out = z_hat_of(st["norm"])
        elif signal == "p_yi":
            out = z_hat_of(st["p_yi"], external=True)
        else:  # the stored image's IQ, the signal the brisque proxy trains with
            out = z_hat_of(torch.as_tensor(self.iq, dtype=torch.float32), external=True)
        return out.cpu().numpy().astype(np.float32)


def probe_path(run_dir: str | Path, epoch: int) -> Path:
    return RunLayout(run_dir).probe_epoch(epoch)


def write_probe(run_dir: str | Path, epoch: int, frame: pd.DataFrame) -> Path:
    """Write ``probe/epoch_XX.parquet`` atomically."""
    path = probe_path(run_dir, epoch)
    write_parquet(path, frame)
    return path
