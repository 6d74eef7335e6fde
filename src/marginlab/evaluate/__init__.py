"""Evaluation protocols of the AdaFace paper and the evaluate stage's driver.

- :mod:`.verification` – 10-fold verification accuracy (LFW protocol) and VAL@FAR on pair lists;
- :mod:`.ijb` – IJB-style template fusion (norm / mean / detector), TAR@FAR, ROC data;
- :mod:`.identification` – closed-set rank-k (CMC) against gallery + distractors (TinyFace);
- :mod:`.embed` – batched flip-fused embedding of RGB ``uint8`` faces;
- :mod:`.run` – ``run_evaluate``: every benchmark of the prepared data for one trained run.
"""

from marginlab.evaluate.embed import embed_images
from marginlab.evaluate.identification import cmc, identification_rates, match_ranks, match_ranks_from_features
from marginlab.evaluate.ijb_protocol import (
    FUSION_MODES,
    evaluate_templates,
    far_key,
    fuse_templates,
    roc_points,
    supported_fars,
    tar_at_far,
    template_pair_scores,
)
from marginlab.evaluate.stage import EvaluationResult, evaluate_prepared, run_evaluate, join_quality, load_run_model, read_quality_scores
from marginlab.evaluate.verification import (
    accuracy_from_distances,
    fold_slices,
    pair_distances,
    ten_fold_accuracy,
    val_far_from_distances,
)

__all__ = [
    "FUSION_MODES",
    "EvaluationResult",
    "accuracy_from_distances",
    "cmc",
    "embed_images",
    "evaluate_prepared",
    "run_evaluate",
    "evaluate_templates",
    "far_key",
    "fold_slices",
    "fuse_templates",
    "identification_rates",
    "join_quality",
    "load_run_model",
    "match_ranks",
    "match_ranks_from_features",
    "pair_distances",
    "read_quality_scores",
    "roc_points",
    "supported_fars",
    "tar_at_far",
    "template_pair_scores",
    "ten_fold_accuracy",
    "val_far_from_distances",
]
