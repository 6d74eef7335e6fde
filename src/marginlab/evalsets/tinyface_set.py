"""TinyFace-style closed-set identification: ``tinyface/`` with ``Probe``, ``Gallery_Match``, ``Gallery_Distractor``.

Rank-k (``evaluate.ranks``) of probes against gallery match + distractors (:mod:`marginlab.evaluate.identification`).
One set per prepared directory, named ``tinyface``; splits ``tinyface:<part>``: position in the part's sorted
path list. Ground truth: ``tinyface/meta.parquet`` (``part`` or ``split`` column plus ``index``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import pandas as pd

from marginlab.evalsets.evalset import (
    EvalSet,
    EvalTools,
    GroundTruthFile,
    SetResult,
    SplitSource,
    binomial_se,
    l2,
    norm_rows,
    pct,
    register_eval_set,
)
from marginlab.core.layouts import PreparedLayout

if TYPE_CHECKING:  # pragma: no cover
    from marginlab.core.config import DataConfig

log = logging.getLogger(__name__)

#: The parts of the layout, in the order they are read (marginlab.data.formats.IDENTIFICATION_PARTS).
PARTS = ("Probe", "Gallery_Match", "Gallery_Distractor")


def _decode_file(paths: list, i: int) -> np.ndarray:
    from marginlab.data.formats import decode_image

    return decode_image(Path(paths[i]).read_bytes(), source=str(paths[i]))


def _part_gt(meta_path: Path, part: str, n: int) -> Optional[np.ndarray]:
    if not meta_path.exists():
        return None
    meta = pd.read_parquet(meta_path)
    part_col = next((c for c in ("part", "split") if c in meta.columns), None)
    if part_col is None or "index" not in meta.columns or "gt_quality" not in meta.columns:
        return None
    sub = meta[meta[part_col].astype(str).isin([part, f"tinyface:{part}"])]
    out = np.full(n, np.nan)
    idx = sub["index"].to_numpy()
    ok = (idx >= 0) & (idx < n)
    out[idx[ok]] = sub["gt_quality"].to_numpy()[ok]
    return out


@register_eval_set
class TinyFaceSet(EvalSet):
    name = "tinyface"
    family = "identification"
    split_prefix = "tinyface"
    title = "identification (TinyFace-style rank-k)"
    expects = "tinyface/"
    order = 30

    def instances(self, layout: PreparedLayout) -> list[str]:
        return [self.name] if layout.tinyface.is_dir() else []

    def splits(self, layout: PreparedLayout, name: str) -> list[SplitSource]:
        from marginlab.data.formats import read_identification_set

        parts = read_identification_set(layout.tinyface)  # paths sorted per part: positions are the index
        out = []
        for part in PARTS:
            paths = list(parts.get(part, ([], None))[0])
            if paths:
                load = functools.partial(_decode_file, paths)
                out.append(SplitSource(f"{self.split_prefix}:{part}", len(paths), load, tuple(Path(p) for p in paths)))
        return out

    def ground_truth_files(self, layout: PreparedLayout) -> list[GroundTruthFile]:
        meta = layout.set_meta(layout.tinyface)
        if not meta.is_file():
            return []
        return [GroundTruthFile(f"{self.split_prefix}:{part}", meta, part) for part in PARTS]

    def evaluate(self, layout: PreparedLayout, name: str, tools: EvalTools) -> SetResult:
        from marginlab.data.formats import read_identification_set

        root = layout.tinyface
        parts = read_identification_set(root)  # checks the layout and the closed-set condition
        feats: dict[str, np.ndarray] = {}
        labels: dict[str, np.ndarray] = {}
        norms = []
        for part in PARTS:
            if part not in parts or len(parts[part][0]) == 0:
                continue
            paths, part_labels = parts[part]
            f = tools.embed(len(paths), functools.partial(_decode_file, list(paths)), f"{self.split_prefix}:{part}")
            feats[part], labels[part] = f, np.asarray(part_labels)
            gt = _part_gt(layout.set_meta(root), part, len(paths))
            norms.append(norm_rows(f"{self.split_prefix}:{part}", f, gt))
        gallery_parts = [p for p in ("Gallery_Match", "Gallery_Distractor") if p in feats]
        metrics = tools.identification.identification_rates(
            l2(feats["Probe"]),
            labels["Probe"],
            l2(np.concatenate([feats[p] for p in gallery_parts])),
            np.concatenate([labels[p] for p in gallery_parts]),
            ranks=tools.cfg.ranks,
        )
        shown = ", ".join(f"rank-{k}: {metrics[f'rank{k}']:.4f}" for k in tools.cfg.ranks)
        log.info(
            f"tinyface: {shown} ({metrics['probes']} probes, gallery {metrics['gallery']} incl. "
            f"{metrics['distractors']} distractors)"
        )
        return SetResult(metrics, None, norms)

    def summary(self, sets: Mapping[str, Any]) -> dict[str, Optional[float]]:
        tiny = sets.get(self.name, {})
        return {"tinyface_rank1": tiny.get("rank1"), "tinyface_rank5": tiny.get("rank5")}

    def metric_rows(self, set_name: str, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for key in sorted((k for k in metrics if re.fullmatch(r"rank\d+", k)), key=lambda k: int(k[4:])):
            if metrics[key] is None:
                continue
            rows.append(
                {
                    "protocol": f"identification/{set_name} {key}",
                    "metric": key,
                    "value": pct(metrics[key]),
                    "se": binomial_se(metrics[key], metrics.get("probes")),
                }
            )
        return rows

    def decision_protocols(self, protocols: list[str]) -> list[str]:
        return [p for p in protocols if p.endswith(" rank1")]

    def unavailable(self, data: "DataConfig") -> Optional[str]:
        if data.source != "synthetic":
            return "no TinyFace-style identification set in the prepared data"
        return None
