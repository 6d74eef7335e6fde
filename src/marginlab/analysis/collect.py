"""Load every run's outputs into tidy frames (one source for tables, claims and figures).

The experiment grid is ``params.runs``; each run's identity (label, head, seed, tags, resolved head
parameters, proxy) is the one its ``model.pt`` recorded (:func:`run_table`); outputs are read from
``<runs_dir>/<run>/``:

- ``probe/epoch_XX.parquet`` → :attr:`Collection.probe` (probe rows + ``run, label, head``; the
  probe's identity column ``label`` is renamed ``class_label`` so that ``label`` is the run's label);
- ``probe/progress/step_XXXXXXX.parquet`` → :attr:`Collection.progress_probe` (the same, plus ``step``,
  ``images_seen``, ``progress``: probes at fractions of training, :mod:`marginlab.train.probe_schedule`);
- ``metrics.json`` → :attr:`Collection.metrics`, long format, one row per run and protocol::

      run, label, head, seed, protocol, family, set, metric, value, se, quality

  ``value`` in percent: verification ``accuracy`` (protocol ``verification/<set>``), IJB
  ``TAR@FAR=<far>`` for the FARs the set supports (``ijb/<set> TAR@FAR=1e-04``), identification
  ``rank<k>`` (``identification/<set> rank1``). ``se`` is the test-set sampling error of the value (%):
  fold std / sqrt(folds) for 10-fold accuracy, sqrt(p(1-p)/N) with N genuine pairs (IJB) or probes
  (identification). ``quality`` is ``low`` for the low/mixed-quality protocols (a verification set
  named ``lq``/``*_lq``/``lq_*``, every IJB set and identification set) and ``high`` otherwise. Each
  section is read by its evaluation-set format (:mod:`marginlab.evalsets`), in table order.
- ``eval_norms.parquet`` → :attr:`Collection.eval_norms` (+ ``run, label, head, epoch``: the
  evaluated epoch from metrics.json);
- ``live/plots/metrics/**/*.tsv`` (dvclive or the plain writer) → :attr:`Collection.live`
  (``run, label, head, step, metric, value``; ``metric`` is the path below ``plots/metrics`` without
  ``.tsv``, e.g. ``train/loss``);
- ``train_summary.json`` → :attr:`Collection.train_summaries`.

Missing outputs are not an error here (a run may not be trained yet): they are listed in
:attr:`Collection.missing` and the analyses use what exists. Malformed files raise
:class:`AnalysisInputError` naming the file.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from marginlab.core.config import Params, default_label
from marginlab.evalsets.evalset import by_family, eval_sets, low_quality_name
from marginlab.core.layouts import QualityLayout, RunLayout

log = logging.getLogger(__name__)

__all__ = [
    "METRIC_COLUMNS",
    "AnalysisInputError",
    "Collection",
    "collect",
    "flatten_metrics",
    "protocol_quality",
    "read_live",
    "read_probe",
    "read_progress_probe",
    "run_table",
]

METRIC_COLUMNS = ["run", "label", "head", "seed", "protocol", "family", "set", "metric", "value", "se", "quality"]
RUN_COLUMNS = ["run", "label", "head", "seed", "proxy", "tags", "head_params", "is_default", "setting_h", "setting_m"]
PROBE_REQUIRED = ("epoch", "pass", "index", "label", "norm", "p_yi")
PROGRESS_REQUIRED = (*PROBE_REQUIRED, "step", "images_seen", "progress")
PROBE_IDENTITY = ["run", "label", "head", "epoch", "pass", "norm", "p_yi"]
PROGRESS_IDENTITY = [*PROBE_IDENTITY, "step", "images_seen", "progress"]


class AnalysisInputError(ValueError):
    """A run output that exists but does not have the expected content."""


def protocol_quality(family: str, set_name: str) -> str:
    """``"low"`` for low/mixed-quality protocols, else ``"high"``: as the family's evaluation-set format says
    (``lq`` verification sets, every IJB and identification set); by the set's name for an unknown family."""
    fmt = by_family(family)
    if fmt is not None:
        return fmt.quality(set_name)
    return "low" if low_quality_name(set_name) else "high"


def run_table(params: Params) -> pd.DataFrame:
    """One row per run of ``params.runs`` with its identity (see ``RUN_COLUMNS``): as recorded in its
    ``model.pt`` once trained (what was measured, whatever the params file says now), else as configured.

    ``is_default``: the head's parameters equal the ``heads.<head>`` defaults and the proxy is the
    feature norm, i.e. the configuration the paper reports for that head.
    """
    from marginlab.models import trained_run  # torch: only where a trained model is read

    rows = []
    for name in params.runs:
        run_dir = RunLayout.of(params, name).root
        r = trained_run(run_dir) if RunLayout(run_dir).model.is_file() else _configured(params, name)
        defaults = getattr(params.heads, r.head).model_dump()
        is_default = all(r.head_params[k] == v if isinstance(v, str) else math.isclose(float(r.head_params[k]), float(v))
                         for k, v in defaults.items()) and r.proxy == "norm"
        rows.append({
            "run": name, "label": r.label, "head": r.head, "seed": int(r.seed), "proxy": r.proxy,
            "tags": tuple(r.tags), "head_params": dict(r.head_params), "is_default": bool(is_default),
            "setting_h": r.head_params.get("h", np.nan), "setting_m": r.head_params.get("m", np.nan),
        })
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _configured(params: Params, name: str) -> SimpleNamespace:
    """The identity of a run not trained yet, from its params entry and its head's defaults."""
    spec = params.runs[name]
    head_params = {**getattr(params.heads, spec.head).model_dump(), **spec.head_params}
    return SimpleNamespace(head=spec.head, head_params=head_params, proxy=spec.proxy, seed=spec.seed,
                           label=spec.label or default_label(name), tags=list(spec.tags))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AnalysisInputError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise AnalysisInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_probe_files(files: list[Path], required: tuple[str, ...], schema: str) -> pd.DataFrame | None:
    """Probe tables concatenated (None for no files); a file without the ``required`` columns is an error."""
    if not files:
        return None
    frames = []
    for f in files:
        frame = pd.read_parquet(f)
        missing = set(required) - set(frame.columns)
        if missing:
            raise AnalysisInputError(f"{f} lacks column(s) {sorted(missing)}; expected the probe schema of {schema}")
        frame["pass"] = frame["pass"].astype(str)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["epoch"] = out["epoch"].astype("int64")
    return out


def read_probe(run_dir: Path) -> pd.DataFrame | None:
    """All ``probe/epoch_XX.parquet`` of one run, concatenated (None when there are none)."""
    return _read_probe_files(RunLayout(run_dir).probe_epochs(), PROBE_REQUIRED, "marginlab.train.probe")


def read_progress_probe(run_dir: Path) -> pd.DataFrame | None:
    """All ``probe/progress/step_XXXXXXX.parquet`` of one run, concatenated (None when there are none)."""
    out = _read_probe_files(RunLayout(run_dir).progress_steps(), PROGRESS_REQUIRED,
                            "marginlab.train.probe_schedule")
    if out is not None:
        out["step"] = out["step"].astype("int64")
    return out


def flatten_metrics(metrics: dict, source: str = "metrics.json") -> list[dict[str, Any]]:
    """Long rows ``protocol, family, set, metric, value, se, quality`` of one run's metrics.json."""
    rows: list[dict[str, Any]] = []
    try:
        for fmt in eval_sets():  # each format reads its own section of metrics.json, in table order
            for name, m in (metrics.get(fmt.family) or {}).items():
                for row in fmt.metric_rows(name, m):
                    rows.append({"protocol": row["protocol"], "family": fmt.family, "set": name, "metric": row["metric"],
                                 "value": row["value"], "se": row["se"]})
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise AnalysisInputError(f"{source}: unexpected metrics layout ({type(err).__name__}: {err}); "
                                 "expected the schema of marginlab.evaluate.stage") from None
    for row in rows:
        row["quality"] = protocol_quality(row["family"], row["set"])
    return rows


def read_live(live_dir: Path) -> pd.DataFrame | None:
    """``step, metric, value`` of every ``plots/metrics/**/*.tsv`` under a dvclive directory."""
    plots = RunLayout.live_plots_of(live_dir)
    files = sorted(plots.rglob("*.tsv")) if plots.is_dir() else []
    if not files:
        return None
    frames = []
    for f in files:
        frame = pd.read_csv(f, sep="\t")
        value_cols = [c for c in frame.columns if c not in ("step", "timestamp")]
        if "step" not in frame.columns or len(value_cols) != 1:
            raise AnalysisInputError(f"{f}: expected columns 'step' and one metric column (dvclive layout), got {list(frame.columns)}")
        metric = f.relative_to(plots).with_suffix("").as_posix()
        frames.append(pd.DataFrame({"step": frame["step"].astype("int64"), "metric": metric,
                                    "value": pd.to_numeric(frame[value_cols[0]], errors="coerce")}))
    return pd.concat(frames, ignore_index=True)


@dataclass
class Collection:
    """Everything the analyses read, as tidy frames (see the module docstring)."""

    runs: pd.DataFrame
    probe: pd.DataFrame
    metrics: pd.DataFrame
    eval_norms: pd.DataFrame
    live: pd.DataFrame
    train_summaries: dict[str, dict] = field(default_factory=dict)
    metrics_json: dict[str, dict] = field(default_factory=dict)
    quality_summary: dict | None = None
    missing: dict[str, list[str]] = field(default_factory=dict)
    progress_probe: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PROGRESS_IDENTITY))


def _identity(frame: pd.DataFrame, info: dict) -> pd.DataFrame:
    frame = frame.copy()
    for k in ("head", "label", "run"):
        frame.insert(0, k, info[k])
    return frame


def collect(params: Params, *, progress: bool = False) -> Collection:
    """Read the outputs of every run in ``params.runs`` (and the quality summary) into a :class:`Collection`."""
    runs = run_table(params)
    runs_dir = Path(params.runs_dir)
    probes, progress_probes, metrics_rows, norms, lives = [], [], [], [], []
    summaries: dict[str, dict] = {}
    metrics_json: dict[str, dict] = {}
    missing: dict[str, list[str]] = {}
    records = runs.to_dict("records")
    iterator = records
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(records, desc="collect runs", unit="run")
    for info in iterator:
        run = RunLayout(runs_dir / info["run"])
        run_dir = run.root
        absent = []
        probe = read_probe(run_dir)
        if probe is None:
            absent.append("probe")
        else:
            probes.append(_identity(probe.rename(columns={"label": "class_label"}), info))
        progress_probe = read_progress_probe(run_dir)  # optional: runs with train.probe_progress = [] have none
        if progress_probe is not None:
            progress_probes.append(_identity(progress_probe.rename(columns={"label": "class_label"}), info))
        mpath = run.metrics
        if mpath.exists():
            m = _read_json(mpath)
            metrics_json[info["run"]] = m
            for row in flatten_metrics(m, source=str(mpath)):
                metrics_rows.append({"run": info["run"], "label": info["label"], "head": info["head"], "seed": info["seed"], **row})
            npath = run.eval_norms
            if npath.exists():
                frame = pd.read_parquet(npath)
                if not {"split", "norm"} <= set(frame.columns):
                    raise AnalysisInputError(f"{npath} lacks 'split'/'norm' columns (schema of marginlab.evaluate.stage)")
                frame.insert(0, "epoch", int(m["epoch"]) if m.get("epoch") is not None else -1)
                norms.append(_identity(frame, info))
        else:
            absent.append("metrics.json")
        live = read_live(run.live_dir)
        if live is None:
            absent.append("live")
        else:
            lives.append(_identity(live, info))
        spath = run.train_summary
        if spath.exists():
            summaries[info["run"]] = _read_json(spath)
        else:
            absent.append("train_summary.json")
        if absent:
            missing[info["run"]] = absent
    if missing:
        log.warning("runs with missing outputs (left out where needed): %s",
                    "; ".join(f"{r}: {', '.join(v)}" for r, v in missing.items()))
    qpath = QualityLayout.of(params).summary
    return Collection(
        runs=runs,
        probe=pd.concat(probes, ignore_index=True) if probes else pd.DataFrame(columns=PROBE_IDENTITY),
        metrics=pd.DataFrame(metrics_rows, columns=METRIC_COLUMNS),
        eval_norms=pd.concat(norms, ignore_index=True) if norms else pd.DataFrame(columns=["run", "label", "head", "epoch", "split", "norm"]),
        live=pd.concat(lives, ignore_index=True) if lives else pd.DataFrame(columns=["run", "label", "head", "step", "metric", "value"]),
        train_summaries=summaries,
        metrics_json=metrics_json,
        quality_summary=_read_json(qpath) if qpath.exists() else None,
        missing=missing,
        progress_probe=pd.concat(progress_probes, ignore_index=True) if progress_probes else pd.DataFrame(columns=PROGRESS_IDENTITY),
    )
