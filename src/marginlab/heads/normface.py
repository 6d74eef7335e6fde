"""NormFace (normalised softmax): logit_j = s · cos θ_j for every class, no margin.

Not in the paper's tables; a cheap sanity baseline that isolates the effect of the margins.
Default s = 64 (the scale every other head uses).
"""

from __future__ import annotations

from typing import Optional

import torch

from marginlab.heads.base import MarginHead
from marginlab.heads.registry import register_head


@register_head
class NormFace(MarginHead):
    """``logit_y = s · cos θ_y`` (the target column is left as the plain scaled cosine)."""

    name = "normface"

    def _target_logits(self, cos_y: torch.Tensor, norms: Optional[torch.Tensor], quality) -> torch.Tensor:
        return self.s * cos_y
