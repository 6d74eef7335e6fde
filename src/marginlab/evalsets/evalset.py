"""What an evaluation-set format is, and the registry every consumer iterates.

A format (verification ``.bin``, IJB, TinyFace, ...) is one :class:`EvalSet` subclass in its own module of
this package, registered with :func:`register_eval_set`. It says where its instances lie in a
:class:`~marginlab.core.layouts.PreparedLayout`, how quality scoring reads their images, how evaluation turns an
embedding function into metrics, ROC rows and norms, and how analysis and the report name and rank its
results. Quality scoring, evaluation, analysis and the report loop over :func:`eval_sets`, so a new format
touches no other module. Torch-free at import (analysis and the report load this); the evaluate stage hands
each format its embedding function and protocol math (:class:`EvalTools`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import numpy as np
import pandas as pd

from marginlab.core.layouts import PreparedLayout
from marginlab.core.name_registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from marginlab.core.config import DataConfig, EvaluateConfig

__all__ = [
    "EVAL_SETS",
    "Embed",
    "EvalSet",
    "EvalTools",
    "GroundTruthFile",
    "SetResult",
    "SplitSource",
    "binomial_se",
    "by_family",
    "eval_sets",
    "low_quality_name",
    "norm_rows",
    "pct",
    "register_eval_set",
]

#: ``embed(n, load, desc)``: the (n, d) un-normalised embeddings of images ``load(0) .. load(n - 1)``.
Embed = Callable[[int, Callable[[int], np.ndarray], str], np.ndarray]


@dataclass
class SplitSource:
    """One split: ``length`` images, ``load(i)`` → RGB uint8 (H, W, 3); ``files`` it reads (for fingerprints)."""

    split: str
    length: int
    load: Callable[[int], np.ndarray]
    files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class GroundTruthFile:
    """Where a split's synthetic ground truth may lie; ``part`` selects rows of a file shared by several splits."""

    split: str
    path: Path
    part: Optional[str] = None


@dataclass(frozen=True)
class EvalTools:
    """What the evaluate stage hands a format: the embedding function, the settings and the protocol math.

    The math modules come in here rather than being imported by the formats, so that the quality stage,
    analysis and the report, which load every format too, never import (nor depend on) the evaluate package.
    """

    embed: Embed
    cfg: "EvaluateConfig"
    verification: ModuleType  # marginlab.evaluate.verification
    ijb: ModuleType  # marginlab.evaluate.ijb_protocol
    identification: ModuleType  # marginlab.evaluate.identification


@dataclass
class SetResult:
    """One evaluated instance: its ``metrics`` entry, ROC rows (``protocol, set, fpr, tpr, threshold``), norms."""

    metrics: dict[str, Any]
    roc: Optional[pd.DataFrame] = None
    norms: list[pd.DataFrame] = field(default_factory=list)


class EvalSet(ABC):
    """One evaluation-set format; subclasses set the class attributes and implement the methods below."""

    #: registry name = folder below the prepared root = key of the prepare manifest's counts
    name: ClassVar[str]
    #: section of metrics.json and the ``family`` column of the analysis tables
    family: ClassVar[str]
    #: prefix of its quality/eval-norm split names (``<split_prefix>:<set or part>``)
    split_prefix: ClassVar[str]
    #: how the report heads its rows
    title: ClassVar[str]
    #: what the error for an empty prepared folder says to expect, relative to the prepared root
    expects: ClassVar[str]
    #: place in every table, figure and file (lower first); the built-in formats use 10, 20, 30
    order: ClassVar[int] = 100

    # ----------------------------------------------------------------------- prepared data
    def folder(self, layout: PreparedLayout) -> Path:
        return layout.eval_dir(self.name)

    @abstractmethod
    def instances(self, layout: PreparedLayout) -> list[str]:
        """The names of this format's sets in ``layout``, sorted (empty when there are none)."""
        raise NotImplementedError

    @abstractmethod
    def splits(self, layout: PreparedLayout, name: str) -> list[SplitSource]:
        """The scorable image streams of set ``name`` (quality stage), in a fixed order."""
        raise NotImplementedError

    def ground_truth_files(self, layout: PreparedLayout) -> list[GroundTruthFile]:
        """Synthetic ground-truth files of this format's splits (absent files are skipped by the reader)."""
        return []

    # ----------------------------------------------------------------------- evaluation
    @abstractmethod
    def evaluate(self, layout: PreparedLayout, name: str, tools: EvalTools) -> SetResult:
        """Set ``name`` measured with ``tools.embed`` (un-normalised, flip-fused embeddings of its images)."""
        raise NotImplementedError

    def summary(self, sets: Mapping[str, Any]) -> dict[str, Optional[float]]:
        """This format's entries of metrics.json's ``summary`` (null when a set is absent); keys are stable."""
        return {}

    # ----------------------------------------------------------------------- analysis and report
    def quality(self, set_name: str) -> str:
        """``"low"`` for a low/mixed-quality benchmark, else ``"high"``."""
        return "low"

    def metric_rows(self, set_name: str, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Long rows ``protocol, metric, value, se`` (percent) of one set's metrics.json entry."""
        raise NotImplementedError

    def decision_protocols(self, protocols: list[str]) -> list[str]:
        """Of this family's protocols, the one per set that verdicts are decided on."""
        return protocols

    def unavailable(self, data: "DataConfig") -> Optional[str]:
        """Why the report shows no row of this family for ``data`` (None: no rows were evaluated)."""
        return None


#: name -> format, filled by :func:`register_eval_set` as the modules of this package are imported.
EVAL_SETS: Registry[EvalSet] = Registry("evaluation-set format")


def register_eval_set(cls: type[EvalSet]) -> type[EvalSet]:
    """Class decorator: register one instance of ``cls`` under ``cls.name`` (family and prefix must be unique)."""
    if cls.name in EVAL_SETS.names():  # the class's own declarations, checked before it is built
        raise ValueError(f"{EVAL_SETS.kind} name {cls.name!r} is registered twice")
    for attr in ("family", "split_prefix"):
        clash = [other.name for other in EVAL_SETS.values() if getattr(other, attr) == getattr(cls, attr)]
        if clash:
            raise ValueError(f"{cls.__qualname__}: {attr} {getattr(cls, attr)!r} is already used by {clash[0]!r}")
    EVAL_SETS.add(cls.name, cls())
    return cls


def eval_sets() -> list[EvalSet]:
    """Every registered format in table order (``order``, then registration)."""
    return sorted(EVAL_SETS.values(), key=lambda f: f.order)


def by_family(family: str) -> Optional[EvalSet]:
    return next((f for f in eval_sets() if f.family == family), None)


# --------------------------------------------------------------------------- shared helpers
def low_quality_name(set_name: str) -> bool:
    """A set named ``lq``, ``lq_*`` or ``*_lq`` is a low-quality benchmark."""
    name = set_name.lower()
    return name == "lq" or name.startswith("lq_") or name.endswith("_lq")


def pct(x: Any) -> float:
    return float(x) * 100.0 if x is not None and np.isfinite(float(x)) else np.nan


def binomial_se(p: Any, n: Any) -> float:
    """Sampling error (percent) of a proportion ``p`` over ``n`` trials."""
    if p is None or not n:
        return np.nan
    p = float(p)
    return 100.0 * math.sqrt(max(p * (1.0 - p), 0.0) / float(n))


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def norm_rows(split: str, feats: np.ndarray, gt: Optional[np.ndarray] = None) -> pd.DataFrame:
    """Rows ``split, index, norm, gt_quality`` of eval_norms.parquet for one split's embeddings."""
    n = feats.shape[0]
    return pd.DataFrame(
        {
            "split": split,
            "index": np.arange(n, dtype=np.int64),
            "norm": np.linalg.norm(feats.astype(np.float64), axis=1),
            "gt_quality": gt if gt is not None else np.full(n, np.nan),
        }
    )


def gt_quality(meta_path: Path, n: int) -> np.ndarray:
    """Per-position ``gt_quality`` of a synthetic set's meta parquet (NaN when absent)."""
    out = np.full(n, np.nan)
    if not meta_path.exists():
        return out
    meta = pd.read_parquet(meta_path)
    if "gt_quality" not in meta.columns:
        return out
    if "index" in meta.columns:
        idx = meta["index"].to_numpy()
        ok = (idx >= 0) & (idx < n)
        out[idx[ok]] = meta["gt_quality"].to_numpy()[ok]
    elif len(meta) == n:
        out[:] = meta["gt_quality"].to_numpy()
    else:
        raise ValueError(f"{meta_path}: {len(meta)} rows without an 'index' column, expected one row per image ({n})")
    return out


def roc_rows(protocol: str, set_name: str, roc: pd.DataFrame) -> pd.DataFrame:
    """``roc`` with the ``protocol`` and ``set`` columns in front."""
    roc.insert(0, "set", set_name)
    roc.insert(0, "protocol", protocol)
    return roc
