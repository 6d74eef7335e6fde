"""IJB-B/C style 1:1 template sets: ``ijb/<name>/`` in the IJB meta layout (:mod:`marginlab.data.formats.ijb`).

Template fusion ``evaluate.fusion`` and TAR at ``evaluate.fars`` (:mod:`marginlab.evaluate.ijb_protocol`).
Split ``ijb:<name>``: face row of ``read_ijb(...).faces``; crops are aligned from their landmarks when read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from marginlab.evalsets.evalset import (
    EvalSet,
    EvalTools,
    GroundTruthFile,
    SetResult,
    SplitSource,
    binomial_se,
    gt_quality,
    norm_rows,
    pct,
    register_eval_set,
    roc_rows,
)
from marginlab.core.layouts import PreparedLayout

if TYPE_CHECKING:  # pragma: no cover
    from marginlab.core.config import DataConfig

log = logging.getLogger(__name__)

#: The FAR whose TAR the summary and the verdicts use (the paper's IJB column), and its metrics.json key
#: (``marginlab.evaluate.ijb_protocol.far_key``; a test keeps the two together).
DECISION_FAR = 1e-4
DECISION_FAR_KEY = "1e-04"


@register_eval_set
class IJBSets(EvalSet):
    name = "ijb"
    family = "ijb"
    split_prefix = "ijb"
    title = "IJB-style template verification (TAR@FAR)"
    expects = "ijb/<name>/meta/"
    order = 20

    def instances(self, layout: PreparedLayout) -> list[str]:
        return [p.name for p in layout.ijb_sets()]

    def splits(self, layout: PreparedLayout, name: str) -> list[SplitSource]:
        from marginlab.data.formats import read_ijb

        set_dir = layout.ijb_set(name)
        ijb = read_ijb(set_dir, name)
        files = tuple(sorted(p for p in (set_dir / "meta").iterdir() if p.is_file()))
        return [SplitSource(f"{self.split_prefix}:{name}", len(ijb.faces), ijb.load_aligned, files)]

    def ground_truth_files(self, layout: PreparedLayout) -> list[GroundTruthFile]:
        if not layout.ijb.is_dir():
            return []
        dirs = sorted(p for p in layout.ijb.iterdir() if p.is_dir())
        return [GroundTruthFile(f"{self.split_prefix}:{d.name}", layout.set_meta(d)) for d in dirs]

    def evaluate(self, layout: PreparedLayout, name: str, tools: EvalTools) -> SetResult:
        from marginlab.data.formats import read_ijb

        cfg = tools.cfg
        set_dir = layout.ijb_set(name)
        ijb = read_ijb(set_dir, name)
        n = len(ijb.faces)
        feats = tools.embed(n, ijb.load_aligned, f"{self.split_prefix}:{name}")
        metrics, roc = tools.ijb.evaluate_templates(feats, ijb.faces, ijb.pairs, fusion=cfg.fusion, fars=cfg.fars)
        norms = norm_rows(f"{self.split_prefix}:{name}", feats, gt_quality(layout.set_meta(set_dir), n))
        shown = ", ".join(f"{k}: {v:.4f}" for k, v in metrics["tar_at_far"].items())
        log.info(f"ijb {name} ({cfg.fusion} fusion): TAR@FAR {shown}")
        return SetResult(metrics, roc_rows("ijb", name, roc), [norms])

    def summary(self, sets: Mapping[str, Any]) -> dict[str, Optional[float]]:
        key = DECISION_FAR_KEY
        tars = [v["tar_at_far"][key] for v in sets.values() if key in v["tar_at_far"]]
        return {f"ijb_tar_at_{key}": float(np.mean(tars)) if tars else None}

    def metric_rows(self, set_name: str, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows = []
        supported = metrics.get("supported_fars")
        for key, tar in (metrics.get("tar_at_far") or {}).items():
            if tar is None or (supported is not None and key not in supported):
                continue
            rows.append(
                {
                    "protocol": f"ijb/{set_name} TAR@FAR={key}",
                    "metric": f"TAR@FAR={key}",
                    "value": pct(tar),
                    "se": binomial_se(tar, metrics.get("genuine")),
                }
            )
        return rows

    def decision_protocols(self, protocols: list[str]) -> list[str]:
        """Per set TAR@FAR=1e-04, or its lowest supported FAR when 1e-4 is not supported."""
        by_set: dict[str, list[tuple[float, str]]] = {}
        for p in protocols:
            name, _, metric = p.partition("/")[2].partition(" TAR@FAR=")
            try:
                by_set.setdefault(name, []).append((float(metric), p))
            except ValueError:
                continue
        chosen = []
        for entries in by_set.values():
            exact = [p for far, p in entries if math.isclose(far, DECISION_FAR)]
            chosen.append(exact[0] if exact else min(entries)[1])
        return chosen

    def unavailable(self, data: "DataConfig") -> Optional[str]:
        if data.source != "synthetic" and not data.ijb:
            return "no IJB set configured (params data.ijb is empty)"
        return None
