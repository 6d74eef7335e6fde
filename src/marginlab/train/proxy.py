"""The quality signal handed to the margin head (``head(embeddings, labels, quality)``).

- ``norm``: ``None`` — the head uses the feature norm ||z|| itself (AdaFace as published).
- ``brisque``: image quality ``IQ = 1 - clip(BRISQUE, 0, 100) / 100`` of the *stored* training image
  (``data/quality/scores.parquet``, rows ``split == "train"``), looked up per sample by its reader
  index. It is a property of the un-augmented image, which is the point of the paper's ablation:
  BRISQUE does not see the augmentation applied in this step.
- ``p_yi``: the softmax probability of the target class,
  ``marginlab.heads.p_yi.p_yi_quality(head, embeddings, labels)`` (detached).

Whatever the signal, the head normalises it with its running batch statistics, ``h`` and the clip,
exactly as it does the norm. Each proxy is declared in :mod:`marginlab.core.proxy_specs` (what the config
reads, torch-free) and implemented here by a :class:`QualityProxy` subclass decorated with
:func:`register_proxy`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np
import pandas as pd
import torch

from marginlab.core.name_registry import Registry
from marginlab.core.proxy_specs import PROXY_SPECS


class ProxyError(ValueError):
    """Quality-proxy input missing or inconsistent (names the file and what was expected)."""


def load_iq_table(scores_path: str | Path, num_images: int, split: str = "train") -> np.ndarray:
    """IQ per reader index ``0..num_images-1`` from ``scores.parquet`` (NaN where a row is missing).

    Expects columns ``split``, ``index``, ``iq``; raises :class:`ProxyError` naming the file otherwise.
    """
    scores_path = Path(scores_path)
    if not scores_path.exists():
        raise ProxyError(f"quality scores {scores_path} not found (run the quality stage first)")
    frame = pd.read_parquet(scores_path)
    missing = {"split", "index", "iq"} - set(frame.columns)
    if missing:
        raise ProxyError(f"{scores_path} lacks columns {sorted(missing)}; expected split, index, brisque, iq")
    rows = frame[frame["split"] == split]
    idx = rows["index"].to_numpy(dtype=np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= num_images):
        raise ProxyError(
            f"{scores_path}: split {split!r} has index values in [{idx.min()}, {idx.max()}], "
            f"outside the {num_images} training images: the scores belong to another prepared dataset; "
            "rerun the quality stage (python -m marginlab quality)"
        )
    table = np.full(num_images, np.nan, dtype=np.float32)
    table[idx] = rows["iq"].to_numpy(dtype=np.float32)
    return table


class QualityProxy(ABC):
    """Callable ``proxy(head, embeddings, labels, indices) -> (B,) tensor or None``; ``for_run`` builds one."""

    name: ClassVar[str]

    @classmethod
    def for_run(
        cls, *, scores_path: str | Path | None = None, num_images: int = 0, train_indices: Optional[np.ndarray] = None
    ) -> "QualityProxy":
        """The proxy for a run, from the inputs it may need (the quality scores of the training images)."""
        return cls()

    @abstractmethod
    def __call__(
        self, head: torch.nn.Module, embeddings: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor
    ) -> Optional[torch.Tensor]:
        raise NotImplementedError


#: name -> proxy class, filled by :func:`register_proxy`.
PROXIES: Registry[type[QualityProxy]] = Registry("quality proxy")


def register_proxy(cls: type[QualityProxy]) -> type[QualityProxy]:
    """Class decorator: register ``cls`` under its declared ``name`` (``PROXY_SPECS``)."""
    if cls.name not in PROXY_SPECS.names():
        raise ValueError(f"quality proxy {cls.name!r} ({cls.__qualname__}) has no declaration: add a ProxySpec for it "
                         f"to marginlab/core/proxy_specs.py (declared: {PROXY_SPECS.allowed()})")
    PROXIES.add(cls.name, cls)
    return cls


@register_proxy
class FeatureNormProxy(QualityProxy):
    name = "norm"

    def __call__(
        self, head: torch.nn.Module, embeddings: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor
    ) -> Optional[torch.Tensor]:
        return None  # the head reads ||z|| itself


@register_proxy
class BrisqueProxy(QualityProxy):
    name = "brisque"

    def __init__(self, iq_table: np.ndarray):
        self._iq = torch.as_tensor(iq_table, dtype=torch.float32)
        self._iq_device: Optional[torch.Tensor] = None

    @classmethod
    def for_run(
        cls, *, scores_path: str | Path | None = None, num_images: int = 0, train_indices: Optional[np.ndarray] = None
    ) -> "BrisqueProxy":
        """Checks every training index has a finite IQ score."""
        if scores_path is None:
            raise ProxyError("proxy 'brisque' needs scores_path (data/quality/scores.parquet)")
        table = load_iq_table(scores_path, num_images)
        check = table if train_indices is None else table[np.asarray(train_indices, dtype=np.int64)]
        bad = int((~np.isfinite(check)).sum())
        if bad:
            raise ProxyError(
                f"{scores_path}: {bad} of {len(check)} training images have no finite 'iq' score for split 'train'; "
                "re-run the quality stage on the current data/prepared/train.rec"
            )
        return cls(table)

    def __call__(
        self, head: torch.nn.Module, embeddings: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor
    ) -> Optional[torch.Tensor]:
        if self._iq_device is None or self._iq_device.device != embeddings.device:
            self._iq_device = self._iq.to(embeddings.device)
        return self._iq_device[indices.to(embeddings.device, non_blocking=True).long()]


@register_proxy
class TargetProbabilityProxy(QualityProxy):
    name = "p_yi"

    def __call__(
        self, head: torch.nn.Module, embeddings: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor
    ) -> Optional[torch.Tensor]:
        from marginlab.heads.p_yi import p_yi_quality

        return p_yi_quality(head, embeddings, labels)


def build_proxy(
    name: str, *, scores_path: str | Path | None = None, num_images: int = 0, train_indices: Optional[np.ndarray] = None
) -> QualityProxy:
    """The proxy ``name`` for a run; an unknown name raises :class:`ProxyError` listing the known ones."""
    try:
        cls = PROXIES.get(name)
    except ValueError as err:
        raise ProxyError(str(err)) from None
    return cls.for_run(scores_path=scores_path, num_images=num_images, train_indices=train_indices)
