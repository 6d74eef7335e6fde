"""Where the prepared data and a run's outputs lie: the two on-disk layouts, named once.

Every writer and reader builds its paths from :class:`PreparedLayout` (``data.prepared_dir``) and
:class:`RunLayout` (``<runs_dir>/<run>``) instead of spelling file names, so a renamed file is one edit
here. ``dvc.yaml`` must spell the same paths literally (DVC reads no Python); a test checks they agree.
Torch-free and cheap to import: the report and the analysis read these layouts too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from marginlab.core.config import Params

__all__ = [
    "EVAL_TIMING_FILE",
    "RELEASED_DIR",
    "TIMING_FILE",
    "PreparedLayout",
    "QualityLayout",
    "ReleasedLayout",
    "RunLayout",
]

#: File name of a stage's timing record inside its output directory (:mod:`marginlab.core.timing`).
TIMING_FILE = "timing.json"
#: Where the ``released`` stage writes, one folder per entry of ``released:`` (fixed in dvc.yaml: the report
#: depends on the folder as a whole, so it must exist, holding its README, even with no entry).
RELEASED_DIR = "released"
#: ``evaluate@RUN`` shares the run directory with training, so its record has its own name.
EVAL_TIMING_FILE = "eval_timing.json"


@dataclass(frozen=True)
class PreparedLayout:
    """The prepared-data directory the prepare stage writes (package docstring of :mod:`marginlab.data.prepare`)."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of(cls, params: "Params") -> "PreparedLayout":
        return cls(params.data.prepared_dir)

    # training set
    @property
    def train_rec(self) -> Path:
        return self.root / "train.rec"

    @property
    def train_idx(self) -> Path:
        return self.root / "train.idx"

    @property
    def train_meta(self) -> Path:
        return self.root / "train_meta.parquet"

    @property
    def train_classes(self) -> Path:
        """Class names of real identity folders (label → folder name)."""
        return self.root / "train_classes.parquet"

    # bookkeeping
    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def samples_png(self) -> Path:
        return self.root / "samples.png"

    @property
    def alignment(self) -> Path:
        return self.root / "alignment.parquet"

    # evaluation sets (each format of marginlab.evalsets owns one folder below the root)
    def eval_dir(self, folder: str) -> Path:
        """The folder of one evaluation-set format (``verification``, ``ijb``, ``tinyface``, or a new one's)."""
        return self.root / folder

    @property
    def verification(self) -> Path:
        return self.eval_dir("verification")

    def verification_bin(self, name: str) -> Path:
        return self.verification / f"{name}.bin"

    def verification_meta(self, name: str) -> Path:
        return self.verification / f"{name}_meta.parquet"

    def verification_bins(self) -> list[Path]:
        """Every ``verification/<name>.bin``, sorted (none when the folder is absent)."""
        return sorted(self.verification.glob("*.bin"))

    @property
    def ijb(self) -> Path:
        return self.eval_dir("ijb")

    def ijb_set(self, name: str) -> Path:
        return self.ijb / name

    def ijb_sets(self) -> list[Path]:
        """Every ``ijb/<name>/`` holding a ``meta/`` folder (the IJB meta layout), sorted."""
        if not self.ijb.is_dir():
            return []
        return sorted(p for p in self.ijb.iterdir() if p.is_dir() and (p / "meta").is_dir())

    @property
    def tinyface(self) -> Path:
        return self.eval_dir("tinyface")

    @staticmethod
    def set_meta(set_dir: Path) -> Path:
        """The synthetic ground truth of an IJB set or the TinyFace folder: ``<set_dir>/meta.parquet``."""
        return set_dir / "meta.parquet"


@dataclass(frozen=True)
class QualityLayout:
    """The quality stage's folder ``quality.output_dir``: the scores train and evaluate join, the summary."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of(cls, params: "Params") -> "QualityLayout":
        return cls(params.quality.output_dir)

    @property
    def scores(self) -> Path:
        return self.root / "scores.parquet"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def parts_dir(self) -> Path:
        """Resumable chunks, deleted when the stage completes."""
        return self.root / ".parts"

    @property
    def timing(self) -> Path:
        return self.root / TIMING_FILE


class EvaluationFiles:
    """The files of one model's evaluation, in the folder ``root``: a run's (evaluate) or a released model's."""

    root: Path

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def roc(self) -> Path:
        return self.root / "roc.parquet"

    @property
    def eval_norms(self) -> Path:
        return self.root / "eval_norms.parquet"


@dataclass(frozen=True)
class RunLayout(EvaluationFiles):
    """One run's folder ``<runs_dir>/<run>``: what train and evaluate write, what analysis and the report read."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of(cls, params: "Params", run: str) -> "RunLayout":
        return cls(Path(params.runs_dir) / run)

    @property
    def name(self) -> str:
        return self.root.name

    # train
    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def model(self) -> Path:
        return self.root / "model.pt"

    @property
    def train_summary(self) -> Path:
        return self.root / "train_summary.json"

    @property
    def probe_dir(self) -> Path:
        return self.root / "probe"

    def probe_epoch(self, epoch: int) -> Path:
        return self.probe_dir / f"epoch_{epoch:02d}.parquet"

    def probe_epochs(self) -> list[Path]:
        return sorted(self.probe_dir.glob("epoch_*.parquet"))

    @property
    def progress_dir(self) -> Path:
        """Probes at fractions of training (:mod:`marginlab.train.probe_schedule`)."""
        return self.probe_dir / "progress"

    def progress_step(self, step: int) -> Path:
        return self.progress_dir / f"step_{step:07d}.parquet"

    def progress_steps(self) -> list[Path]:
        return sorted(self.progress_dir.glob("step_*.parquet"))

    @property
    def live_dir(self) -> Path:
        return self.root / "live"

    @property
    def live_metrics(self) -> Path:
        """dvclive's ``metrics.json`` of the last epoch (inside ``live/``; not the evaluation's)."""
        return self.live_dir / "metrics.json"

    @property
    def live_plots(self) -> Path:
        return self.live_plots_of(self.live_dir)

    @staticmethod
    def live_plots_of(live_dir: Path) -> Path:
        """The metric plots of a dvclive folder: ``<live_dir>/plots/metrics``."""
        return live_dir / "plots" / "metrics"

    # evaluate: metrics, roc, eval_norms (EvaluationFiles), and
    @property
    def eval_timing(self) -> Path:
        return self.root / EVAL_TIMING_FILE


@dataclass(frozen=True)
class ReleasedLayout(EvaluationFiles):
    """``released/<name>``: what the ``released`` stage measured on one released model, the report reads.
    ``metrics`` also holds the model's provenance, the correlations and the augmentation test."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of(cls, name: str, base: str | Path = RELEASED_DIR) -> "ReleasedLayout":
        return cls(Path(base) / name)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def sample_norms(self) -> Path:
        """The training-set sample: clean and augmented norms per image, with identity and IQ."""
        return self.root / "sample_norms.parquet"

    @property
    def timing(self) -> Path:
        return self.root / TIMING_FILE
