"""Per-epoch metric logging: dvclive when it can run here, otherwise a plain writer with the same layout.

Both backends write ``<dir>/metrics.json`` (latest value of every metric plus ``step``) and
``<dir>/plots/metrics/<name>.tsv`` (columns ``step`` and ``<name>``, one row per logged step), which
is what ``dvc metrics``/``dvc plots`` read.

dvclive is opened as ``Live(dir, resume=resume, dvcyaml=False, save_dvc_exp=False, report=None)``:
no ``dvc.yaml`` rewriting and no experiment refs, so it behaves the same under ``dvc repro``,
``dvc exp run`` (DVC itself records the experiment) and Snakemake (several jobs at once). dvclive
raises ``SCMError: Empty git repo`` in a git repository without commits (``pipeline.md``); then, or on
any other error while opening it, the plain writer is used and a warning says why.
The environment variable ``MARGINLAB_LIVE`` overrides the choice: ``auto`` (default, as above),
``dvclive`` (dvclive or fail), ``plain`` (never dvclive).

Steps are set explicitly (``step = epoch``), not counted, so a resumed run continues at the right
step; :func:`truncate_history` drops rows logged after the checkpoint a run resumes from, so a run
killed between logging and checkpointing does not leave duplicate rows.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from marginlab.core.io import atomic_path, write_json

log = logging.getLogger(__name__)

ENV_VAR = "MARGINLAB_LIVE"
BACKENDS = ("auto", "dvclive", "plain")


def truncate_history(live_dir: str | Path, keep_below: int) -> None:
    """Remove every logged row with ``step >= keep_below`` from the ``.tsv`` histories in ``live_dir``."""
    plots = Path(live_dir) / "plots" / "metrics"
    if not plots.is_dir():
        return
    for tsv in sorted(plots.rglob("*.tsv")):
        frame = pd.read_csv(tsv, sep="\t")
        if "step" not in frame.columns:
            continue
        kept = frame[frame["step"] < keep_below]
        if len(kept) != len(frame):
            with atomic_path(tsv) as tmp:
                kept.to_csv(tmp, sep="\t", index=False)


def logged_steps(live_dir: str | Path, metric: str = "train/loss") -> set[int]:
    """Steps present in the history of ``metric`` (empty if it was never logged)."""
    tsv = Path(live_dir) / "plots" / "metrics" / f"{metric}.tsv"
    if not tsv.exists():
        return set()
    frame = pd.read_csv(tsv, sep="\t")
    return set(int(s) for s in frame["step"]) if "step" in frame.columns else set()


class PlainLive:
    """Minimal stand-in for ``dvclive.Live`` (same files, no git/DVC interaction)."""

    backend = "plain"

    def __init__(self, dir: str | Path, resume: bool = False):  # noqa: A002 - mirrors dvclive
        self.dir = Path(dir)
        self.metrics_file = self.dir / "metrics.json"
        self.plots_dir = self.dir / "plots" / "metrics"
        self.summary: dict[str, Any] = {}
        self.step = 0
        if resume and self.metrics_file.exists():
            self.summary = json.loads(self.metrics_file.read_text())
        elif not resume:
            shutil.rmtree(self.dir / "plots", ignore_errors=True)
            self.metrics_file.unlink(missing_ok=True)
        self.plots_dir.mkdir(parents=True, exist_ok=True)

    def log_metric(self, name: str, val: float) -> None:
        path = self.plots_dir / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with open(path, "a") as fh:
            if new:
                fh.write(f"step\t{Path(name).name}\n")
            fh.write(f"{self.step}\t{val}\n")
        node = self.summary
        parts = name.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = val if (isinstance(val, str) or math.isfinite(val)) else str(val)

    def next_step(self) -> None:
        self.summary["step"] = self.step
        write_json(self.metrics_file, self.summary)
        self.step += 1

    def end(self) -> None:
        write_json(self.metrics_file, self.summary)


class EpochLogger:
    """Log a dict of scalars per epoch to dvclive (or :class:`PlainLive`), at ``step = epoch``."""

    def __init__(self, live_dir: str | Path, resume: bool, backend: Optional[str] = None):
        self.dir = Path(live_dir)
        backend = (backend or os.environ.get(ENV_VAR, "auto")).lower()
        if backend not in BACKENDS:
            raise ValueError(f"environment variable {ENV_VAR}={backend!r}; allowed: {', '.join(BACKENDS)}")
        self.fallback_reason: Optional[str] = None
        self._live: Any
        if backend == "plain":
            self._live = PlainLive(self.dir, resume=resume)
        else:
            try:
                from dvclive import Live

                self._live = Live(dir=str(self.dir), resume=resume, dvcyaml=False, save_dvc_exp=False, report=None)
                self._live.backend = "dvclive"
            except Exception as err:  # dvclive raises SCMError in a git repo without commits
                if backend == "dvclive":
                    raise
                self.fallback_reason = f"{type(err).__name__}: {err}"
                log.warning("dvclive unavailable here (%s); writing metrics with the plain logger", self.fallback_reason)
                self._live = PlainLive(self.dir, resume=resume)

    @property
    def backend(self) -> str:
        return getattr(self._live, "backend", "dvclive")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Log every ``name: value`` at ``step`` and write the summary."""
        self._live.step = int(step)
        for name, value in metrics.items():
            self._live.log_metric(name, float(value))
        self._live.next_step()
        self._live.step = int(step)

    def end(self) -> None:
        self._live.end()
