"""The report's "Released models" section: what models trained elsewhere, at the paper's scale, measured here.

One block per entry of ``released:`` (params), from ``released/<name>/metrics.json`` (:mod:`marginlab.released.study`):
the model's provenance and images seen beside the paper's, the feature norm–quality correlations with their
intervals, each labelled with the set it was measured on (the paper's 0.52 was measured on its own training
set: only a training-set sample with ``own_data`` is that setting), the paired augmentation test (claim 4) and
the protocols. An entry whose stage has not run is listed with the command that measures it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marginlab.analysis.images_seen import sci
from marginlab.analysis.paper_numbers import FIG2_NORM_IQ_CORRELATION, PAPER_IMAGES_SEEN, PAPER_SETTING
from marginlab.core.layouts import RELEASED_DIR, ReleasedLayout
from marginlab.report.formatting import _finite, fmt_corr, fmt_value
from marginlab.report.inputs import ReportInputs

__all__ = ["released_section", "set_description"]

TARGET_TEXT = {"iq": "IQ (1 − BRISQUE/100)", "gt_quality": "ground-truth quality (synthetic data)"}
AUGMENTATION_TEXT = {"none": "no quality-changing augmentation", "crop": "crop", "lowres": "low resolution",
                     "photometric": "photometric", "any": "any of the three"}


def set_description(set_name: str, own_data: bool, dataset: str) -> str:
    """Which images a correlation row was measured on, and whether that is the paper's setting."""
    if set_name == "train-sample":
        if own_data:
            return f"training-set sample of {dataset}, the model's own training data (the paper's setting)"
        return f"training-set sample of {dataset}, not the model's training data (out of distribution)"
    split = set_name.removeprefix("eval:")
    return f"evaluation split {split} of {dataset}"


def _interval(row: Mapping[str, Any], key: str) -> str:
    value = fmt_corr(row.get(key))
    lo, hi = _finite(row.get(f"{key}_lo")), _finite(row.get(f"{key}_hi"))
    return value if lo is None or hi is None else f"{value} [{lo:.3f}, {hi:.3f}]"


def _images_seen(value: Any) -> str:
    n = _finite(value)
    if n is None:
        return "not stated (add images_seen to the entry)"
    ratio = n / PAPER_IMAGES_SEEN
    relation = f"{sci(1 / ratio)}× fewer than" if ratio < 1 else f"{sci(ratio)}× the"
    return f"{sci(n)} ({relation} paper's {sci(PAPER_IMAGES_SEEN)})"


def _protocols(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    for name, entry in (metrics.get("verification") or {}).items():
        if isinstance(entry, Mapping):
            rows.append({"set": name, "metric": "10-fold accuracy (%)", "value": fmt_value(100 * (_finite(entry.get("accuracy_mean")) or float("nan")))})
    for name, entry in (metrics.get("ijb") or {}).items():
        if isinstance(entry, Mapping):
            tars = entry.get("tar_at_far") or {}
            key = "1e-04" if "1e-04" in tars else next(iter(tars), "1e-04")  # evaluate's far_key spelling
            tar = tars.get(key)
            rows.append({"set": name, "metric": f"TAR@FAR={key} (%)", "value": fmt_value(100 * tar if _finite(tar) is not None else None)})
    for name, entry in (metrics.get("identification") or {}).items():
        if isinstance(entry, Mapping):
            rank1 = entry.get("rank1")
            rows.append({"set": name, "metric": "rank-1 (%)", "value": fmt_value(100 * rank1 if _finite(rank1) is not None else None)})
    return rows


def _entry(name: str, entry: Any, folder: Path, dataset: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "format": entry.format, "arch": entry.arch or "inferred from the file",
                           "trained_on": entry.trained_on or "not stated", "images_seen": _images_seen(entry.images_seen),
                           "file": entry.file, "note": None, "refused": None, "correlations": [], "augmentation": [],
                           "protocols": [], "sha256": "", "headline": None}
    path = ReleasedLayout(folder).metrics
    if not path.is_file():
        out["note"] = f"{path} not found: run `dvc repro released@{name}` (or python -m marginlab released {name})"
        return out
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        out["note"] = f"{path} cannot be read ({type(err).__name__}: {err})"
        return out
    model = metrics.get("model") or {}
    out["arch"] = model.get("arch") or out["arch"]
    out["sha256"] = str(model.get("sha256", ""))[:12]
    own = bool(model.get("own_data", entry.own_data))
    correlation, augmentation = metrics.get("correlation"), metrics.get("augmentation")
    if isinstance(correlation, Mapping) and correlation.get("refused"):
        out["refused"] = str(correlation["refused"])
    else:
        rows = sorted((r for r in correlation or [] if isinstance(r, Mapping)),
                      key=lambda r: r.get("set") != "train-sample")  # the paper's kind of set first
        out["headline"] = _headline(rows, own)
        out["correlations"] = [{"set": set_description(str(r.get("set")), own, dataset),
                                "target": TARGET_TEXT.get(str(r.get("target")), str(r.get("target"))),
                                "spearman": _interval(r, "spearman"), "pearson": _interval(r, "pearson"),
                                "n": r.get("n"), "bootstrap": r.get("bootstrap"),
                                "paper_setting": r.get("set") == "train-sample" and own}
                               for r in rows]
    if isinstance(augmentation, list):
        out["augmentation"] = [{"augmentation": AUGMENTATION_TEXT.get(str(r.get("augmentation")), str(r.get("augmentation"))),
                                "n": r.get("n"), "median_ratio": fmt_value(r.get("median_ratio"), 3),
                                "mean_log_ratio": _interval_log(r), "bootstrap": r.get("bootstrap")}
                               for r in augmentation if isinstance(r, Mapping)]
    out["protocols"] = _protocols(metrics)
    return out


def _headline(rows: list[Mapping[str, Any]], own: bool) -> str | None:
    """One sentence: Spearman(norm, IQ) on the training-set sample against the paper's 0.52."""
    row = next((r for r in rows if r.get("set") == "train-sample" and r.get("target") == "iq"), None)
    if row is None or _finite(row.get("spearman")) is None:
        return None
    where = ("its own training data, the paper's setting" if own else
             "not its training data, so out of distribution for this model")
    return (f"Feature norm vs IQ on a training-set sample ({where}): Spearman {_interval(row, 'spearman')} "
            f"(n = {row.get('n')}, {row.get('bootstrap')} bootstrap); the paper reports "
            f"{FIG2_NORM_IQ_CORRELATION:.2f} on its own training set.")


def _interval_log(row: Mapping[str, Any]) -> str:
    value = _finite(row.get("mean_log_ratio"))
    lo, hi = _finite(row.get("mean_log_ratio_lo")), _finite(row.get("mean_log_ratio_hi"))
    if value is None:
        return "—"
    return f"{value:+.3f}" + ("" if lo is None or hi is None else f" [{lo:+.3f}, {hi:+.3f}]")


def released_section(inputs: ReportInputs) -> dict[str, Any]:
    """The template's ``released`` context (module docstring)."""
    params = inputs.params
    paper = (f"The paper's Fig. 2a correlation of feature norm with IQ, {FIG2_NORM_IQ_CORRELATION:.2f}, was measured on its "
             f"training set ({PAPER_SETTING}, {sci(PAPER_IMAGES_SEEN)} images seen).")
    if not params.released:
        return {"entries": [], "paper": paper,
                "note": "no released model is configured: add one under released: in params.yaml (README, "
                        "\"Released models\": the authors' checkpoints, arcface_torch backbones, ONNX models)"}
    base = inputs.root / RELEASED_DIR
    return {"entries": [_entry(name, entry, base / name, params.data.name) for name, entry in params.released.items()],
            "paper": paper, "note": None}
