"""ArcFace (additive angular margin): logit_y = s · cos(θ_y + m), non-targets s · cos θ_j.

Defaults s = 64, m = 0.5.

Convention when θ_y + m > π ("clip", as in the official AdaFace code's ArcFace head): with
eps = 1e-4, cos θ_y is clamped to [-1 + eps, 1 - eps] before the arccos and the shifted angle
θ_y + m is clipped to [eps, π - eps]. Past the boundary θ_y > π - m - eps the target logit therefore
stays at s · cos(π - eps) ≈ -s and the margin passes no gradient to cos θ_y (such a sample only gets
gradient through its non-target logits). The alternatives — CurricularFace/TFace's linear
"threshold" fallback cos θ - sin(π - m) · m, or insightface's margin applied under no-grad — are not
used here. The same clip is what AdaFace uses, so AdaFace at ẑ = -1 is this head exactly (up to eps).
"""

from __future__ import annotations

from typing import Optional

import torch

from marginlab.heads.base import MarginHead, cos_shifted_angle
from marginlab.heads.registry import register_head


@register_head
class ArcFace(MarginHead):
    """Additive angular margin with the clip convention (see module docstring)."""

    name = "arcface"
    eps = 1e-4

    def _target_logits(self, cos_y: torch.Tensor, norms: Optional[torch.Tensor], quality) -> torch.Tensor:
        return self.s * cos_shifted_angle(cos_y, self.m, self.eps)
