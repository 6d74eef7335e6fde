"""Verification ``.bin`` sets (LFW, CFP-FP, AgeDB-30, the synthetic ``hq``/``lq``): ``verification/<name>.bin``.

10-fold accuracy (+ VAL@FAR=1e-3) of flip-fused, L2-normalised embeddings (:mod:`marginlab.evaluate.verification`);
ROC rows with scores = −distance. Split ``bin:<name>``: image position in the ``.bin``. A ``.bin`` is one pickle,
so its encoded bytes are held while that split is scored or embedded.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from marginlab.evalsets.evalset import (
    EvalSet,
    EvalTools,
    GroundTruthFile,
    SetResult,
    SplitSource,
    gt_quality,
    l2,
    low_quality_name,
    norm_rows,
    pct,
    register_eval_set,
    roc_rows,
)
from marginlab.core.layouts import PreparedLayout

if TYPE_CHECKING:  # pragma: no cover
    from marginlab.core.config import DataConfig

log = logging.getLogger(__name__)

#: The sets metrics.json's summary always names (null when absent): the synthetic data's high/low-quality bins.
SUMMARY_SETS = ("hq", "lq")


def _decode_encoded(encoded: list, source: str, i: int) -> np.ndarray:
    from marginlab.data.formats import decode_image

    return decode_image(bytes(encoded[i]), source=f"{source}[{i}]")


@register_eval_set
class VerificationBins(EvalSet):
    name = "verification"
    family = "verification"
    split_prefix = "bin"
    title = "verification (10-fold accuracy)"
    expects = "verification/*.bin"
    order = 10

    def instances(self, layout: PreparedLayout) -> list[str]:
        return [p.stem for p in layout.verification_bins()]

    def splits(self, layout: PreparedLayout, name: str) -> list[SplitSource]:
        from marginlab.data.formats import decode_image, read_bin_encoded

        path = layout.verification_bin(name)
        encoded, _ = read_bin_encoded(path)  # for the length; released before scoring
        length = len(encoded)
        del encoded
        state: dict[str, list] = {}

        def load(i: int, path: Path = path, state: dict = state, last: int = length - 1) -> np.ndarray:
            if "encoded" not in state:  # read the pickle when the split is scored...
                state["encoded"] = read_bin_encoded(path)[0]
            image = decode_image(bytes(state["encoded"][i]), source=f"{path}[{i}]")
            if i == last:  # ...and release it after its last image (images are loaded in order)
                state.clear()
            return image

        return [SplitSource(f"{self.split_prefix}:{name}", length, load, (path,))]

    def ground_truth_files(self, layout: PreparedLayout) -> list[GroundTruthFile]:
        return [
            GroundTruthFile(f"{self.split_prefix}:{path.name[: -len('_meta.parquet')]}", path)
            for path in sorted(layout.verification.glob("*_meta.parquet"))
        ]

    def evaluate(self, layout: PreparedLayout, name: str, tools: EvalTools) -> SetResult:
        from marginlab.data.formats import read_bin_encoded

        path = layout.verification_bin(name)
        encoded, issame = read_bin_encoded(path)
        issame = np.asarray(issame, dtype=bool)
        if len(encoded) != 2 * issame.shape[0]:
            raise ValueError(f"{path}: {len(encoded)} images for {issame.shape[0]} pairs (expected 2 images per pair)")
        feats = tools.embed(
            len(encoded), functools.partial(_decode_encoded, encoded, str(path)), f"{self.split_prefix}:{name}"
        )
        normed = l2(feats)
        metrics = tools.verification.ten_fold_accuracy(normed[0::2], normed[1::2], issame)
        dist = tools.verification.pair_distances(normed[0::2], normed[1::2])
        roc = roc_rows("verification", name, tools.ijb.roc_points(-dist, issame))
        gt = gt_quality(layout.verification_meta(name), len(encoded))
        log.info(
            f"verification {name}: accuracy {metrics['accuracy_mean']:.4f} ± {metrics['accuracy_std']:.4f} "
            f"({metrics['pairs']} pairs)"
        )
        return SetResult(metrics, roc, [norm_rows(f"{self.split_prefix}:{name}", feats, gt)])

    def summary(self, sets: Mapping[str, Any]) -> dict[str, Optional[float]]:
        accs = [v["accuracy_mean"] for v in sets.values()]
        out: dict[str, Optional[float]] = {
            f"{s}_accuracy": sets[s]["accuracy_mean"] if s in sets else None for s in SUMMARY_SETS
        }
        out["verification_mean_accuracy"] = float(np.mean(accs)) if accs else None
        return out

    def quality(self, set_name: str) -> str:
        return "low" if low_quality_name(set_name) else "high"

    def metric_rows(self, set_name: str, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
        import math

        folds = metrics.get("fold_accuracies") or []
        k = len(folds) or 10
        std = metrics.get("accuracy_std")
        se = pct(std) / math.sqrt(k) if std is not None else np.nan
        value = pct(metrics["accuracy_mean"])
        return [{"protocol": f"verification/{set_name}", "metric": "accuracy", "value": value, "se": se}]

    def unavailable(self, data: "DataConfig") -> Optional[str]:
        if data.source != "synthetic" and not data.val_bins:
            return "no verification .bin configured (params data.val_bins is empty)"
        return None
