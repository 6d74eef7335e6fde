"""The AdaFace paper's reported numbers, for the "paper" columns of the comparison table.

Source: Kim, Jain, Liu, *AdaFace: Quality Adaptive Margin for Face Recognition*, CVPR 2022
(arXiv 2204.00964):

- high-quality 10-fold verification accuracy (%) of AdaFace R100 trained on MS1MV2 (paper Table 3),
  and their average (97.19), shown beside the synthetic set's ``hq`` split, the analogue of those sets
  (the synthetic ``tinyface`` split likewise gets the TinyFace numbers);
- IJB-B / IJB-C TAR@FAR=1e-4 (%), R100 MS1MV2 (paper Table 4); the baselines' values are the ones
  the paper quotes from the baselines' own papers;
- TinyFace rank-1 / rank-5 (%), R100 MS1MV2 (paper Table 5);
- the final-epoch correlation between feature norm and the BRISQUE-based IQ score (Fig. 2a), as
  quoted by a reader in the public issue tracker (issue #24): about 0.5235. Which coefficient it is
  is not stated.

Table 1 (the IR-18 ablations) is not available to us; only its qualitative conclusions are
(:data:`ABLATION_CONCLUSIONS`) and the settings it found best (:data:`PAPER_BEST`). All values are
percentages except the correlation.

Also here, being facts about the paper rather than about our code: its training scale
(:data:`PAPER_SCALE`, :data:`PAPER_EPOCHS`, :data:`PAPER_EARLY_PROGRESS`) and which head states its Fig. 3 draws
(:data:`FIG3_PANELS`). Every module that shows a paper number imports it from here.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "ABLATION_CONCLUSIONS",
    "FIG2_NORM_IQ_CORRELATION",
    "FIG3_PANELS",
    "Fig3Panel",
    "IJB_TAR_1E4",
    "PAPER_BEST",
    "PAPER_EARLY_PROGRESS",
    "PAPER_EPOCHS",
    "PAPER_IMAGES_SEEN",
    "PAPER_SCALE",
    "PAPER_SETTING",
    "TINYFACE",
    "VERIFICATION",
    "VERIFICATION_HQ_AVERAGE",
    "paper_value",
]

PAPER_SETTING = "R100 MS1MV2"

#: Training epochs of every model in the paper (main tables and Table 1).
PAPER_EPOCHS = 26
#: The paper's "early in training" (claim 1b) as a fraction of its optimiser steps: the end
#: of epoch 1 of 26, 1/26 ≈ 3.85 % (MS1MV2 at the global batch 512: about 11.4k of 296k steps, 5.8 M images seen).
PAPER_EARLY_PROGRESS = 1 / PAPER_EPOCHS
#: Training images the paper's models saw: MS1MV2's 5.8 M images × 26 epochs ≈ 1.5×10⁸ (the denominator of the
#: report's "at this scale" ratio).
PAPER_IMAGES_SEEN = 5_800_000 * PAPER_EPOCHS
#: The paper's training scale, stated beside its numbers.
PAPER_SCALE = {
    "main": (f"R100 (IR-100) at 112×112 on MS1MV2 (5.8 M images, 85,742 identities), {PAPER_EPOCHS} epochs, "
             "batch 512, fp16, 2× A100"),
    "table1": f"IR-18 at 112×112 on a 70,722-identity subset of MS1MV2, the same {PAPER_EPOCHS}-epoch recipe",
}

#: Fig. 2a final-epoch correlation of feature norm with IQ (quoted in issue #24; coefficient unstated).
FIG2_NORM_IQ_CORRELATION = 0.5235

#: 10-fold accuracy (%) of AdaFace R100 MS1MV2 on the five high-quality sets; keys = prepared .bin stems.
VERIFICATION: dict[str, dict[str, float]] = {
    "adaface": {"lfw": 99.82, "cfp_fp": 98.49, "cplfw": 93.53, "agedb_30": 98.05, "calfw": 96.08},
}
VERIFICATION_DISPLAY = {"lfw": "LFW", "cfp_fp": "CFP-FP", "cplfw": "CPLFW", "agedb_30": "AgeDB", "calfw": "CALFW"}

#: The average of the five high-quality sets (%), shown beside the synthetic ``hq`` verification split.
VERIFICATION_HQ_AVERAGE: dict[str, float] = {"adaface": 97.19}
HQ_AVERAGE_SETTING = f"{PAPER_SETTING}, mean of LFW, CFP-FP, CPLFW, AgeDB, CALFW (real high-quality sets; ours: synthetic hq)"

#: IJB-B / IJB-C TAR@FAR=1e-4 (%), R100 MS1MV2; keys = prepared IJB set names.
IJB_TAR_1E4: dict[str, dict[str, float]] = {
    "adaface": {"ijbb": 95.67, "ijbc": 96.89},
    "cosface": {"ijbb": 94.80, "ijbc": 96.37},
    "arcface": {"ijbb": 94.25, "ijbc": 96.03},
    "curricularface": {"ijbb": 94.80, "ijbc": 96.10},
    "magface": {"ijbb": 94.51, "ijbc": 95.97},
}
IJB_DISPLAY = {"ijbb": "IJB-B", "ijbc": "IJB-C"}

#: TinyFace closed-set identification (%), R100 MS1MV2.
TINYFACE: dict[str, dict[str, float]] = {
    "adaface": {"rank1": 68.21, "rank5": 71.54},
    "curricularface": {"rank1": 63.68, "rank5": 67.65},
}

#: Table 1's conclusions in words (its numbers are not available), per ablation factor.
ABLATION_CONCLUSIONS = {
    "h": "h = 0.33 is best of {0.22, 0.33, 0.66}, and every h beats CurricularFace",
    "m": "larger m gives more adaptivity; the paper keeps m = 0.4",
    "proxy": "the feature norm is the best quality proxy (1 - BRISQUE misjudges augmented images, "
             "P_yi follows difficulty rather than quality)",
}
#: What the paper found best in Table 1, per ablation factor.
PAPER_BEST: dict[str, float | str] = {"h": 0.333, "m": 0.4, "proxy": "norm"}


class Fig3Panel(NamedTuple):
    """One panel of the paper's Fig. 3: a head in one running state, and the paper's words for that state."""

    head: str
    variant: dict[str, float]  # as given to MarginHead.set_analysis_state (one of the head's gst_variants)
    words: str = ""


#: The panels of the paper's Fig. 3, in its order. The gst stage draws one panel per registered head and
#: GST variant (:mod:`marginlab.analysis.gst_study`); the ones listed here are marked ``fig3`` and carry
#: the paper's words in their titles. MagFace is drawn at the middle of [l_a, u_a] = [10, 110];
#: CurricularFace early (t = 0, its initial value) and late (t = 0.5, a typical running mean of cos θ_y
#: late in training); AdaFace at high norm (ẑ = +1) and low norm (ẑ = -1).
FIG3_PANELS: tuple[Fig3Panel, ...] = (
    Fig3Panel("cosface", {}),
    Fig3Panel("arcface", {}),
    Fig3Panel("magface", {"norm": 60.0}, "middle norm"),
    Fig3Panel("curricularface", {"t": 0.0}, "early"),
    Fig3Panel("curricularface", {"t": 0.5}, "late"),
    Fig3Panel("adaface", {"z_hat": 1.0}, "high norm"),
    Fig3Panel("adaface", {"z_hat": -1.0}, "low norm"),
)


def paper_value(head: str, family: str, set_name: str, metric: str) -> tuple[float | None, str]:
    """``(value %, setting)`` the paper reports for ``head`` on one protocol, or ``(None, "")``.

    ``family`` is ``verification`` / ``ijb`` / ``identification``; ``metric`` is ``accuracy``,
    ``TAR@FAR=1e-04`` or ``rank1`` / ``rank5``.
    """
    if family == "verification" and metric == "accuracy":
        value = VERIFICATION.get(head, {}).get(set_name)
        if value is not None:
            return value, f"{PAPER_SETTING}, {VERIFICATION_DISPLAY[set_name]}"
        if set_name == "hq" and head in VERIFICATION_HQ_AVERAGE:
            return VERIFICATION_HQ_AVERAGE[head], HQ_AVERAGE_SETTING
    if family == "ijb" and metric == "TAR@FAR=1e-04":
        value = IJB_TAR_1E4.get(head, {}).get(set_name)
        if value is not None:
            return value, f"{PAPER_SETTING}, {IJB_DISPLAY[set_name]} TAR@FAR=1e-4"
    if family == "identification" and set_name == "tinyface":
        value = TINYFACE.get(head, {}).get(metric)
        if value is not None:
            return value, f"{PAPER_SETTING}, TinyFace {metric.replace('rank', 'rank-')}"
    return None, ""
