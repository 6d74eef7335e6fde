"""Provenance of a report: which code, configuration, inputs, software and hardware produced it.

- git: commit of ``root`` (``git rev-parse HEAD``), dirty flag (tracked files with changes, from
  ``git status --porcelain``; untracked files are counted separately), branch;
- ``params.yaml`` verbatim and its ``preset``;
- ``dvc.lock``: per stage, the hash DVC recorded for each dependency (``deps``: path, md5/hash) — the
  exact inputs the outputs were computed from — and the params keys it tracked;
- package versions (importlib.metadata) of torch, pyiqa, dvc, snakemake, timm, numpy and a few more;
- hardware of the machine rendering the report (CPU model, logical cores, RAM, GPUs) and the training
  device each run recorded in its ``train_summary.json`` (they may differ: training may run elsewhere);
- wall time per stage, as each stage recorded it: ``prepare`` (manifest ``wall_time_s``), ``train@RUN``
  (train summary ``wall_time_s``), ``gst`` (its summary), and ``quality`` / ``evaluate@RUN`` /
  ``analyze`` from the ``timing.json`` / ``eval_timing.json`` records they write beside their
  deterministic outputs (:mod:`marginlab.core.timing`); "not recorded" where a record is absent.

Nothing here fails the report: an unavailable item becomes :class:`~marginlab.report.inputs.Missing`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from marginlab.report.inputs import Missing, ReportInputs, is_missing
from marginlab.core.timing import EVAL_TIMING_FILE, TIMING_FILE

__all__ = [
    "PACKAGES", "collect_provenance", "dvc_lock_inputs", "git_state", "hardware", "package_versions", "stage_wall_times",
    "summarize_wall_times",
]

PACKAGES = ("torch", "pyiqa", "dvc", "snakemake", "timm", "numpy", "torchvision", "pandas", "scipy", "matplotlib",
            "jinja2", "opencv-python-headless", "dvclive", "marginlab")
log = logging.getLogger(__name__)

WALL_TIME_KEYS = ("wall_time_s", "wall_seconds", "elapsed_s")


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(root: Path) -> Any:
    """``{commit, short, branch, dirty, changed, untracked}`` of the repository at ``root``, or Missing."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return Missing(f"{root.resolve()} is not a git repository with a commit (git rev-parse HEAD failed)")
    status = _git(root, "status", "--porcelain") or ""
    lines = [ln for ln in status.splitlines() if ln.strip()]
    untracked = [ln for ln in lines if ln.startswith("??")]
    changed = [ln[3:] for ln in lines if not ln.startswith("??")]
    branch = (_git(root, "rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None
    return {"commit": commit.strip(), "short": commit.strip()[:10], "branch": branch, "dirty": bool(changed),
            "changed": changed, "untracked": len(untracked)}


def _dep_hash(dep: dict[str, Any]) -> str:
    for key in ("md5", "hash", "etag", "checksum"):
        value = dep.get(key)
        if isinstance(value, str) and value not in ("md5",) and value:  # DVC 3 writes `hash: md5` beside `md5: <value>`
            return value
    return "—"


def dvc_lock_inputs(root: Path) -> Any:
    """``[{stage, deps: [{path, hash, size, nfiles}], params: [key, ...]}]`` from ``root/dvc.lock``, or Missing."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return Missing(f"{lock} not found: the pipeline was not run with 'dvc repro' here "
                       "(or its outputs were not recorded with 'dvc commit')")
    try:
        data = yaml.load(lock.read_text(), Loader=yaml.BaseLoader) or {}  # all scalars as text: hashes stay verbatim
    except yaml.YAMLError as err:
        return Missing(f"{lock} is not valid YAML ({err})")
    stages = data.get("stages") if isinstance(data, dict) else None
    if not isinstance(stages, dict):
        return Missing(f"{lock} has no 'stages' mapping")
    out = []
    for name, entry in stages.items():
        entry = entry or {}
        deps = [{"path": str(d.get("path")), "hash": _dep_hash(d), "size": d.get("size"), "nfiles": d.get("nfiles")}
                for d in entry.get("deps", []) or [] if isinstance(d, dict)]
        params = []
        for file, keys in (entry.get("params") or {}).items():
            params += [f"{file}:{k}" for k in (keys or {})]
        out.append({"stage": str(name), "deps": deps, "params": params})
    return out


def package_versions(names=PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                value = line.split(":", 1)[1].strip()
                if value and not value.isdigit():
                    return value
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[str]:
    try:
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except (ImportError, RuntimeError, AssertionError) as err:  # a broken CUDA install must not fail the report
        log.warning("could not list GPUs: %s", err)
    return []


def hardware() -> dict[str, Any]:
    """The machine rendering the report: CPU model, logical cores, RAM (GiB), GPUs, OS."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "usable_cores": affinity, "ram_gib": _ram_gib(),
            "gpus": _gpus(), "os": f"{platform.system()} {platform.release()}", "host": platform.node()}


def _wall(obj: Any) -> float | None:
    if isinstance(obj, dict):
        for key in WALL_TIME_KEYS:
            value = obj.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    return None


def stage_wall_times(inputs: ReportInputs) -> list[dict[str, Any]]:
    """``[{stage, seconds (or None), source}]`` in pipeline order (see the module docstring)."""
    rows = [{"stage": "prepare", "seconds": _wall(inputs.manifest), "source": "manifest.json"},
            {"stage": "quality", "seconds": _wall(inputs.quality_timing), "source": f"quality {TIMING_FILE}"}]
    for run in inputs.runs:
        rows.append({"stage": f"train@{run.name}", "seconds": _wall(run.train_summary), "source": "train_summary.json"})
    for run in inputs.runs:
        rows.append({"stage": f"evaluate@{run.name}", "seconds": _wall(run.eval_timing), "source": EVAL_TIMING_FILE})
    rows.append({"stage": "analyze", "seconds": _wall(inputs.analysis_timing), "source": f"analysis/{TIMING_FILE}"})
    rows.append({"stage": "gst", "seconds": _wall(inputs.gst_summary), "source": "analysis/gst/summary.json"})
    return rows


def _training_devices(inputs: ReportInputs) -> list[dict[str, Any]]:
    """Distinct training set-ups recorded in the runs' train summaries, with the runs that used each."""
    groups: dict[tuple, list[str]] = {}
    for run in inputs.runs:
        ts = run.train_summary
        if is_missing(ts) or not isinstance(ts, dict):
            continue
        key = tuple("—" if ts.get(k) is None else str(ts.get(k)) for k in ("device", "device_name", "amp", "threads", "torch"))
        groups.setdefault(key, []).append(run.name)
    return [{"device": k[0], "device_name": k[1], "amp": k[2], "threads": k[3], "torch": k[4], "runs": names}
            for k, names in groups.items()]


def summarize_wall_times(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-run stages (``train@RUN``, ``evaluate@RUN``) folded into one row each: total, range, count."""
    out: list[dict[str, Any]] = []
    folded: dict[str, dict[str, Any]] = {}
    for row in rows:
        base, _, run = row["stage"].partition("@")
        if not run:
            out.append({**row, "detail": ""})
            continue
        if base not in folded:
            folded[base] = {"stage": f"{base}@* ", "values": [], "runs": 0, "source": row["source"]}
            out.append(folded[base])
        folded[base]["runs"] += 1
        if row["seconds"] is not None:
            folded[base]["values"].append(row["seconds"])
    for base, entry in folded.items():
        values = entry.pop("values")
        entry["stage"] = f"{base} ({entry.pop('runs')} runs)"
        entry["seconds"] = sum(values) if values else None
        entry["detail"] = (f"total of {len(values)} recorded; per run {min(values):.1f}–{max(values):.1f} s" if values else "")
    return out


def collect_provenance(inputs: ReportInputs) -> dict[str, Any]:
    """Everything the provenance section shows (see the module docstring)."""
    return {
        "generated_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "preset": inputs.params.preset,
        "git": git_state(inputs.root),
        "params_path": str(inputs.params_path),
        "params_text": inputs.params_path.read_text(),
        "dvc_lock": dvc_lock_inputs(inputs.root),
        "packages": package_versions(),
        "hardware": hardware(),
        "training_devices": _training_devices(inputs),
        "wall_times": summarize_wall_times(stage_wall_times(inputs)),
        "wall_times_per_run": [r for r in stage_wall_times(inputs) if "@" in r["stage"]],
    }
