"""Claim 2 (the margin form controls sample emphasis): analytic, through the head code over a grid
stated in advance (:data:`..gst.EMPHASIS_GRID`); no training data involved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


from marginlab.analysis.decision import decision
from marginlab.analysis.claims.claim_registry import ClaimEvidence, register_claim
from marginlab.analysis.claim_parts import make_claim, make_part


def claim_margin_form(adaface_params: Mapping[str, float]) -> dict[str, Any]:
    """Claim 2 (analytic): AdaFace's |GST| favours hard samples at high norm and disfavours them at low norm.

    The emphasis ratio R = |g(hard)| / |g(easy)| (:func:`marginlab.analysis.gst.emphasis`; autograd through the
    head code) of AdaFace with ``adaface_params`` at ẑ = +1 (high norm) and ẑ = -1 (low norm), evaluated over
    the grid stated in advance, :data:`..gst.EMPHASIS_GRID`: every (easy cos θ_y ∈ {0.3 … 0.7}, hard cos θ_y ∈
    {-0.4 … 0.0}) pair at cos θ_j ∈ {0, 0.2, 0.4} — 75 comparisons. The paper's ordering is R(+1) > 1 and
    R(-1) < 1.

    Rule, fixed before the grid was evaluated: a grid point counts only where neither sample's softmax is
    saturated at either ẑ (1 - P_y ≥ :data:`..gst.SATURATION` = 0.01): a saturated sample's |GST| is set by
    how deep it sits in the softmax tail at s = 64 (a factor exp(-s·Δcos)), not by the margin form the claim
    is about. *Supported* if the ordering holds at every unsaturated point; *not supported* if it fails at
    more than half of them; *inconclusive* otherwise (it holds in part of the plane) or with no unsaturated
    point. The share over all 75 points and over the unsaturated ones is shown either way, with the ratios
    at the named example points (:data:`..gst.EASY_POINT` / :data:`..gst.HARD_POINT`) and CosFace/ArcFace
    for contrast.
    """
    from marginlab.analysis.gst import EASY_POINT, EMPHASIS_GRID, HARD_POINT, SATURATION, emphasis, emphasis_grid

    statement = ("The margin form decides which samples are emphasised: AdaFace emphasises hard samples when the "
                 "feature norm is high and de-emphasises them when it is low (Fig. 3, |GST|).")
    rule = ("over the pre-stated grid of (easy cos θ_y, hard cos θ_y, cos θ_j) = "
            f"{list(EMPHASIS_GRID['easy_cos_target'])} × {list(EMPHASIS_GRID['hard_cos_target'])} × "
            f"{list(EMPHASIS_GRID['cos_nontarget'])} (75 points), R = |GST(hard)| / |GST(easy)|: supported if R(ẑ=+1) > 1 "
            f"and R(ẑ=-1) < 1 at every point where neither sample's softmax is saturated (1 - P_y ≥ {SATURATION:g} at "
            "both ẑ); not supported if the ordering fails at more than half of those points; otherwise inconclusive")
    params = {k: float(v) for k, v in adaface_params.items() if k in ("s", "m", "h", "t_alpha")}
    ratios = {f"adaface z_hat={z:+g}": emphasis("adaface", {"z_hat": z}, hyperparameters=params) for z in (1.0, -1.0)}
    ratios.update({head: emphasis(head) for head in ("cosface", "arcface")})
    grid = emphasis_grid("adaface", [{"z_hat": 1.0}, {"z_hat": -1.0}], hyperparameters=params)
    holds = ((grid["R[z_hat=1]"] > 1) & (grid["R[z_hat=-1]"] < 1)).to_numpy()
    saturated = (grid["saturated[z_hat=1]"] | grid["saturated[z_hat=-1]"]).to_numpy()
    n_open = int((~saturated).sum())
    n_hold_open = int(holds[~saturated].sum())
    if n_open == 0:
        verdict = "inconclusive"
    elif n_hold_open == n_open:
        verdict = "supported"
    elif n_open - n_hold_open > n_open / 2:
        verdict = "not supported"
    else:
        verdict = "inconclusive"
    by_j = {f"cos θ_j={j:g}": {"holds": int(holds[grid["cos_nontarget"].to_numpy() == j].sum()),
                               "points": int((grid["cos_nontarget"].to_numpy() == j).sum()),
                               "unsaturated": int((~saturated[grid["cos_nontarget"].to_numpy() == j]).sum()),
                               "holds_unsaturated": int((holds & ~saturated)[grid["cos_nontarget"].to_numpy() == j].sum())}
            for j in EMPHASIS_GRID["cos_nontarget"]}
    numbers = {"adaface_params": params, "grid_points": len(grid), "holds": int(holds.sum()),
               "share_holds": float(holds.mean()), "unsaturated_points": n_open, "holds_unsaturated": n_hold_open,
               "share_holds_unsaturated": n_hold_open / n_open if n_open else None, "by_cos_nontarget": by_j,
               "failures_unsaturated": [[float(r.easy_cos_target), float(r.hard_cos_target), float(r.cos_nontarget)]
                                        for r, h, s in zip(grid.itertuples(index=False), holds, saturated) if not h and not s],
               "easy_point": list(EASY_POINT), "hard_point": list(HARD_POINT), "ratios": ratios}
    part = make_part("a: emphasis over the grid", verdict, rule, numbers,
                 decision(verdict, None, None, "analytic: exact, no sampling noise"))
    return make_claim(2, "Margin form controls sample emphasis", statement, "Fig. 3 and issue #24", [part],
                  "the single part's verdict", note="analytic: evaluates the margin function through the head code over a "
                  "stated grid; no training data involved")


@register_claim("2", order=20)
def claim_2(ev: ClaimEvidence) -> dict[str, Any]:
    """Claim 2 with the configured AdaFace hyperparameters."""
    return claim_margin_form(ev.params.heads.adaface.model_dump())
