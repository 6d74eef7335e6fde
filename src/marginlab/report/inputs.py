"""Read the stage outputs the report is built from, with a reason for everything that is missing.

Required: ``params.yaml`` and the ``analysis/`` directory (the ``analyze`` stage). Without either,
:class:`ReportInputError` names the path and the stage that produces it. Everything else is optional;
an absent file becomes :class:`Missing` (``why`` says what was expected and which stage writes it), and
the report shows "not available: <why>". A file that exists but does not match its schema (a CSV
without a required column, JSON that does not parse) is an error naming the file and what was expected:
a silently half-rendered report would hide a broken stage.

Paths come from ``params.yaml``: ``data.prepared_dir`` (``manifest.json``, ``samples.png``),
``quality.output_dir`` (``summary.json``, ``timing.json``), ``runs_dir`` (per run ``metrics.json``,
``eval_timing.json``, ``train_summary.json``, ``probe/``, ``live/``); the analysis outputs live in ``analysis/`` and the Fig. 3
outputs in ``analysis/gst/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from marginlab.core.config import ConfigError, Params, load_params
from marginlab.core.layouts import PreparedLayout, QualityLayout, RunLayout
from marginlab.core.timing import TIMING_FILE

__all__ = [
    "ANALYSIS_SCHEMAS",
    "Missing",
    "ReportInputError",
    "ReportInputs",
    "RunOutputs",
    "is_missing",
    "load_inputs",
    "read_csv",
    "read_json",
]

#: Columns the report needs from each analysis CSV (extra columns are fine).
ANALYSIS_SCHEMAS: dict[str, tuple[str, ...]] = {
    "correlation.csv": ("run", "label", "head", "epoch", "pass", "quantity", "target", "pearson", "pearson_lo",
                        "pearson_hi", "spearman", "spearman_lo", "spearman_hi", "n"),
    "augmentation.csv": ("run", "label", "epoch", "norm_bin", "share_crop", "share_lowres", "share_photometric",
                         "share_any", "n"),
    "ablation.csv": ("factor", "setting", "label", "set", "mean", "std", "n_seeds"),
    "comparison.csv": ("label", "head", "protocol", "mean", "std", "n_seeds", "delta_vs_adaface", "ci_lo", "ci_hi",
                       "p_value", "test", "paper_value", "paper_setting"),
    "zhat.csv": ("run", "label", "head", "schedule", "epoch", "pass", "n", "q05", "q50", "q95", "share_clip_low",
                 "share_clip_high"),
    "scale.csv": ("run", "label", "head", "identities", "train_images", "epochs", "steps", "images_seen",
                  "spearman_iq", "spearman_iq_lo", "spearman_iq_hi", "spearman_gt_quality", "spearman_gt_quality_lo",
                  "spearman_gt_quality_hi"),
}
ANALYZE_HINT = "the 'analyze' stage (python -m marginlab analyze, or dvc repro analyze)"
GST_HINT = "the 'gst' stage (python -m marginlab gst, or dvc repro gst)"


class ReportInputError(RuntimeError):
    """A required report input is absent, or an input file does not have the expected content."""


@dataclass(frozen=True)
class Missing:
    """An optional input that is not there; ``why`` is shown as "not available: <why>"."""

    why: str

    def __bool__(self) -> bool:  # lets templates and code write `if value`
        return False


def is_missing(value: Any) -> bool:
    return isinstance(value, Missing)


def read_json(path: Path, producer: str) -> Any:
    """Parsed JSON of ``path``, :class:`Missing` when absent, :class:`ReportInputError` when unreadable."""
    if not path.is_file():
        return Missing(f"{path} not found (written by {producer})")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportInputError(f"{path} is not valid JSON ({err}); it is written by {producer} — rerun that stage") from None


def read_csv(path: Path, required: tuple[str, ...], producer: str) -> Any:
    """The CSV at ``path`` as a DataFrame, :class:`Missing` when absent; checks the ``required`` columns."""
    if not path.is_file():
        return Missing(f"{path} not found (written by {producer})")
    try:
        frame = pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return Missing(f"{path} is empty (written by {producer})")
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ReportInputError(f"{path} cannot be read as CSV ({err}); it is written by {producer}") from None
    absent = [c for c in required if c not in frame.columns]
    if absent:
        raise ReportInputError(
            f"{path} lacks column(s) {absent}; expected at least {list(required)} (written by {producer}) — "
            "is the analysis stage older or newer than the report?"
        )
    return frame


@dataclass
class RunOutputs:
    """What one run of ``params.runs`` left in ``<runs_dir>/<run>/`` (each part possibly :class:`Missing`)."""

    name: str
    label: str
    head: str
    seed: int
    tags: list[str]
    head_params: dict[str, float]
    proxy: str
    directory: Path
    metrics: Any
    train_summary: Any
    eval_timing: Any  # eval_timing.json (wall time of evaluate@RUN), or Missing
    probe_epochs: Any  # list of epoch numbers found in probe/, or Missing
    live_dir: Any  # Path of live/plots/metrics, or Missing


@dataclass
class ReportInputs:
    """Everything the report reads (see the module docstring)."""

    root: Path
    params_path: Path
    params: Params
    analysis_dir: Path
    tables: dict[str, Any] = field(default_factory=dict)  # CSV name -> DataFrame | Missing
    claims: Any = None
    analysis_summary: Any = None
    analysis_figures: dict[str, Path] = field(default_factory=dict)
    gst_summary: Any = None
    gst_figures: dict[str, Path] = field(default_factory=dict)
    gst_note: Missing | None = None
    quality_summary: Any = None
    quality_timing: Any = None
    analysis_timing: Any = None
    manifest: Any = None
    samples_png: Any = None
    runs: list[RunOutputs] = field(default_factory=list)


def _pngs(directory: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(directory.glob("*.png")) if p.is_file()} if directory.is_dir() else {}


def _run_outputs(params: Params, root: Path, name: str) -> RunOutputs:
    resolved = params.run(name)
    run = RunLayout(root / params.runs_dir / name)
    run_dir = run.root
    train_hint = f"the 'train@{name}' stage"
    probe_dir = run.probe_dir
    if probe_dir.is_dir():
        epochs = sorted(int(p.stem.split("_")[-1]) for p in run.probe_epochs() if p.stem.split("_")[-1].isdigit())
        probe = epochs or Missing(f"{probe_dir} holds no epoch_XX.parquet (written by {train_hint})")
    else:
        probe = Missing(f"{probe_dir} not found (written by {train_hint})")
    live = run.live_plots
    return RunOutputs(
        name=name, label=resolved.label, head=resolved.head, seed=resolved.seed, tags=list(resolved.tags),
        head_params=dict(resolved.head_params), proxy=resolved.proxy, directory=run_dir,
        metrics=read_json(run.metrics, f"the 'evaluate@{name}' stage"),
        train_summary=read_json(run.train_summary, train_hint),
        eval_timing=read_json(run.eval_timing, f"the 'evaluate@{name}' stage"),
        probe_epochs=probe,
        live_dir=live if live.is_dir() else Missing(f"{live} not found (written by {train_hint})"),
    )


def load_inputs(root: str | Path = ".", params_path: str | Path | None = None,
                analysis_dir: str | Path = "analysis", params: Params | None = None) -> ReportInputs:
    """Read every report input under ``root`` (relative paths in params resolve against ``root``);
    ``params``: the file at ``params_path`` already validated (the command loads it), else read here."""
    root = Path(root)
    params_path = Path(params_path) if params_path is not None else root / "params.yaml"
    if not params_path.is_file():
        raise ReportInputError(f"{params_path} not found: the report needs the params file the pipeline ran with")
    if params is None:
        try:
            params = load_params(params_path, root=root)
        except ConfigError as err:
            raise ReportInputError(str(err)) from None
    analysis = root / analysis_dir
    if not analysis.is_dir():
        raise ReportInputError(f"{analysis} not found: it is produced by {ANALYZE_HINT}; run it before the report")
    inputs = ReportInputs(root=root, params_path=params_path, params=params, analysis_dir=analysis)
    for name, columns in ANALYSIS_SCHEMAS.items():
        inputs.tables[name] = read_csv(analysis / name, columns, ANALYZE_HINT)
    inputs.claims = read_json(analysis / "claims.json", ANALYZE_HINT)
    inputs.analysis_summary = read_json(analysis / "summary.json", ANALYZE_HINT)
    inputs.analysis_timing = read_json(analysis / TIMING_FILE, ANALYZE_HINT)
    inputs.analysis_figures = _pngs(analysis / "figures")
    gst = analysis / "gst"
    inputs.gst_summary = read_json(gst / "summary.json", GST_HINT)
    inputs.gst_figures = _pngs(gst / "figures")
    if not inputs.gst_figures:
        inputs.gst_note = Missing(f"no figures in {gst / 'figures'} (written by {GST_HINT})")
    quality = QualityLayout(root / params.quality.output_dir)
    inputs.quality_summary = read_json(quality.summary, "the 'quality' stage")
    inputs.quality_timing = read_json(quality.timing, "the 'quality' stage")
    prepared = PreparedLayout(root / params.data.prepared_dir)
    inputs.manifest = read_json(prepared.manifest, "the 'prepare' stage")
    samples = prepared.samples_png
    inputs.samples_png = samples if samples.is_file() else Missing(f"{samples} not found (written by the 'prepare' stage)")
    inputs.runs = [_run_outputs(params, root, name) for name in params.runs]
    return inputs
