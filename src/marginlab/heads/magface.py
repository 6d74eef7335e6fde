"""MagFace (Meng et al., CVPR 2021): a margin that grows with the feature magnitude, plus a magnitude
regulariser. Defaults s = 64, l_a = 10, u_a = 110, l_m = 0.45, u_m = 0.8, λ_g = 35.

- a = clamp(||z||, l_a, u_a); m(a) = k · (a - l_a) + l_m with k = (u_m - l_m) / (u_a - l_a). The gradient
  flows through a (inside the bounds) into the embedding.
- Target: cos(θ_y + m(a)) = x · cos m(a) - sqrt(1 - x²) · sin m(a) with x = cos θ_y clamped to [-1, 1],
  with the "easy margin" of the official code: where x ≤ 0 the target keeps x (no margin). Logits × s.
- Loss = CE + :meth:`MagFace.regularizer` = CE + λ_g · mean_i g(a_i), g(a) = a / u_a² + 1 / a.
- Feasibility (MagFace paper): the loss has a unique optimum of a in [l_a, u_a] when
  λ_g ≥ s · k · u_a² · l_a² / (u_a² - l_a²) (22.59 for the defaults); a config below it gets a warning.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch

from marginlab.head_specs import magface_lambda_bound
from marginlab.heads.base import MarginHead, compute_dtype
from marginlab.heads.registry import register_head


@register_head
class MagFace(MarginHead):
    """MagFace head; needs the feature norm, so :meth:`logits_from_cosines` must be given ``norms``."""

    name = "magface"
    # The margin m(a) at the feature magnitude a = l_a, the middle and u_a (defaults 10, 60, 110).
    gst_variants = ({"norm": 10.0}, {"norm": 60.0}, {"norm": 110.0})
    analysis_state_keys = frozenset({"norm"})

    @classmethod
    def analysis_variants(cls, hyperparameters) -> tuple[dict[str, float], ...]:
        """The margin at a = l_a, the middle and u_a of the configured magnitude range."""
        l_a = float(hyperparameters.get("l_a", 10.0))
        u_a = float(hyperparameters.get("u_a", 110.0))
        return ({"norm": l_a}, {"norm": round(0.5 * (l_a + u_a), 10)}, {"norm": u_a})

    def _analysis_state(self, variant: dict[str, float], batch: int) -> torch.Tensor:
        if "norm" not in variant:
            raise ValueError("GST for 'magface' needs a norm level: variant {'norm': a}")
        return torch.full((batch,), float(variant["norm"]), dtype=self.weight.dtype)
    def __init__(self, embedding_size: int, num_classes: int, **hyperparameters):
        super().__init__(embedding_size, num_classes, **hyperparameters)
        bound = magface_lambda_bound(self.s, self.l_a, self.u_a, self.l_m, self.u_m)
        if self.lambda_g < bound:
            warnings.warn(
                f"MagFace lambda_g={self.lambda_g:g} is below the feasibility bound "
                f"s*k*u_a^2*l_a^2/(u_a^2-l_a^2) = {bound:.2f} for s={self.s:g}, l_a={self.l_a:g}, u_a={self.u_a:g}, "
                f"l_m={self.l_m:g}, u_m={self.u_m:g}, so the feature magnitude has no guaranteed unique optimum.",
                UserWarning,
                stacklevel=2,
            )

    def margin(self, norms: torch.Tensor) -> torch.Tensor:
        """m(a) = (u_m - l_m)/(u_a - l_a) · (clamp(||z||, l_a, u_a) - l_a) + l_m."""
        a = norms.clamp(self.l_a, self.u_a)
        return (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m

    def _target_logits(
        self, cos_y: torch.Tensor, norms: Optional[torch.Tensor], quality: Optional[torch.Tensor]
    ) -> torch.Tensor:
        if norms is None:
            raise ValueError("head 'magface' needs the feature norms ||z|| (pass norms=... to logits_from_cosines)")
        m = self.margin(norms)
        x = cos_y.clamp(-1.0, 1.0)
        sin = torch.sqrt((1.0 - x * x).clamp_min(1e-12))
        cos_m = x * torch.cos(m) - sin * torch.sin(m)
        return self.s * torch.where(x > 0, cos_m, x)

    def regularizer(self, embeddings: torch.Tensor) -> torch.Tensor:
        """λ_g · mean g(a), g(a) = a / u_a² + 1 / a, a = clamp(||z||, l_a, u_a) (gradient inside the bounds)."""
        a = torch.linalg.vector_norm(embeddings.to(compute_dtype(embeddings)), dim=1).clamp(self.l_a, self.u_a)
        return self.lambda_g * (a / self.u_a**2 + 1.0 / a).mean()
