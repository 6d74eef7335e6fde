"""ElasticFace-Arc (Boutros et al., CVPRW 2022): ArcFace with a margin drawn per sample from N(m, σ).

logit_y = s · cos(θ_y + m_i), non-targets s · cos θ_j, with m_i ~ N(m, σ²) drawn independently for every
sample of every training step (from torch's default generator, so a seeded run is reproducible). Outside
training (evaluation, the gradient-scaling analysis) the margin is its mean m, i.e. ArcFace with margin m.
Defaults are the paper's ElasticFace-Arc values: s = 64, m = 0.5, σ = 0.05. The shifted angle follows
ArcFace's clip convention (:func:`~marginlab.heads.base.cos_shifted_angle`, eps = 1e-4).

The AdaFace paper discusses margins that vary per sample; ElasticFace varies it at random, AdaFace by
image quality, which makes it the natural control for "is it the adaptivity or the quality signal?".
This head was added through this file and its declaration in :mod:`marginlab.head_specs` (plus its
tests): the registry, the params schema, the gradient-scaling analysis and the tables find it by itself.
"""

from __future__ import annotations

from typing import Optional

import torch

from marginlab.heads.base import MarginHead, cos_shifted_angle
from marginlab.heads.registry import register_head


@register_head
class ElasticFace(MarginHead):
    """ElasticFace-Arc: additive angular margin m_i ~ N(m, σ²) per sample in training, m otherwise."""

    name = "elasticface"
    eps = 1e-4

    def margins(self, like: torch.Tensor) -> torch.Tensor | float:
        """The per-sample margins: N(m, σ²) draws shaped like ``like`` in training, else the mean m."""
        if not self.training or self.sigma == 0.0:
            return self.m
        return torch.normal(self.m, self.sigma, size=like.shape, dtype=like.dtype, device=like.device)

    def _target_logits(self, cos_y: torch.Tensor, norms: Optional[torch.Tensor], quality) -> torch.Tensor:
        return self.s * cos_shifted_angle(cos_y, self.margins(cos_y), self.eps)
