"""Batched embedding of aligned RGB ``uint8`` faces with flip fusion (GPU when present).

``feature(img) = backbone(x) + backbone(flip_horizontal(x))`` with ``x`` the model input of the image
(:func:`marginlab.data.model_input.to_model_input`: resize to ``input_size``, channel order, then
``(v/255 − 0.5)/0.5``). The sum is left unnormalised: its norm is the quality signal the
norm-aware protocols use, and L2-normalising it afterwards gives the usual flip-fused embedding.
Inference runs under ``torch.inference_mode`` with the backbone in eval mode (its previous mode is
restored afterwards) and, on CUDA, under fp16 autocast (more mantissa than bf16 for the norms;
``amp=False`` for full fp32); the output is float32 numpy.

Memory format: ``channels_last`` inputs (``evaluate.channels_last``; ``None`` = on CUDA only). On the
2-core CPU, the default model (IR-18 x0.25 at 48x48, flip on) embedded 1.5-2.0x faster with channels_last
at batch 128 than contiguous at batch 256 (``bench/bench_evaluate.py --sweep``, bench/RESULTS.md); the
embeddings agree to ~1e-6 of their largest value (the training forward runs channels_last too).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from marginlab.data.model_input import to_model_input
from marginlab.core.device import resolve_device

__all__ = ["embed_images", "iter_batches"]

ImageChunk = Union[np.ndarray, Sequence[np.ndarray]]


def _as_batch(chunk: ImageChunk, input_size: int, channel_order: str) -> torch.Tensor:
    """Model input of one chunk: an (n, H, W, 3) array, or a list of HxWx3 images of any sizes."""
    if isinstance(chunk, np.ndarray) and chunk.ndim == 3:
        chunk = chunk[None]
    return to_model_input(chunk, input_size, channel_order)


def iter_batches(images: Union[np.ndarray, Iterable[ImageChunk]], batch_size: int) -> Iterator[ImageChunk]:
    """Regroup an (N, H, W, 3) array or an iterable of chunks into batches of ``batch_size`` images
    (the last one may be smaller); chunks of any size, e.g. single images, are accumulated."""
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"images must be (N, H, W, 3), got shape {images.shape}")
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]
        return
    buffer: list[np.ndarray] = []
    for chunk in images:
        if isinstance(chunk, np.ndarray):
            if chunk.ndim == 3:
                chunk = chunk[None]
            if chunk.ndim != 4:
                raise ValueError(f"an image chunk must be (n, H, W, 3) or (H, W, 3), got shape {chunk.shape}")
        buffer.extend(chunk)
        while len(buffer) >= batch_size:
            yield buffer[:batch_size]
            buffer = buffer[batch_size:]
    if buffer:
        yield buffer


def _autocast(device: torch.device, amp: bool):
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def embed_images(
    backbone: nn.Module,
    images: Union[np.ndarray, Iterable[ImageChunk]],
    *,
    input_size: int,
    channel_order: str = "BGR",
    batch_size: int = 256,
    flip: bool = True,
    device: Union[str, torch.device, None] = "auto",
    amp: bool = True,
    total: Optional[int] = None,
    desc: Optional[str] = None,
    progress: bool = True,
    channels_last: Optional[bool] = None,
) -> np.ndarray:
    """(N, D) float32 unnormalised (flip-fused when ``flip``) embeddings of RGB ``uint8`` faces.

    ``images`` is an (N, H, W, 3) array or an iterable of chunks (arrays or lists of images, e.g. a
    generator decoding a file lazily); ``total`` sizes the progress bar for generators.
    ``channels_last``: feed the backbone channels_last batches (``None``: only on CUDA).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = device if isinstance(device, torch.device) else resolve_device(device or "auto")
    if channels_last is None:
        channels_last = dev.type == "cuda"
    was_training = backbone.training
    param = next(backbone.parameters(), None)
    original_device = param.device if param is not None else dev
    backbone.eval().to(dev)
    if total is None and isinstance(images, np.ndarray):
        total = images.shape[0]
    outputs: list[np.ndarray] = []
    bar = tqdm(total=total, desc=desc or "embed", unit="img", disable=not progress, leave=False)
    try:
        with torch.inference_mode(), _autocast(dev, amp):
            for chunk in iter_batches(images, batch_size):
                x = _as_batch(chunk, input_size, channel_order)
                if x.shape[0] == 0:
                    continue
                x = x.to(dev, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                feats = backbone(x).float()
                if flip:
                    feats = feats + backbone(torch.flip(x, dims=[3])).float()
                outputs.append(feats.cpu().numpy().astype(np.float32, copy=False))
                bar.update(x.shape[0])
    finally:
        bar.close()
        backbone.train(was_training)
        backbone.to(original_device)
    if not outputs:
        raise ValueError("no images to embed")
    out = np.concatenate(outputs)
    if not np.isfinite(out).all():
        raise FloatingPointError("the backbone produced NaN/inf embeddings (diverged model or fp16 overflow)")
    return out
