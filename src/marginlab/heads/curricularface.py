"""CurricularFace (Huang et al., CVPR 2020): angular margin on the target plus an adaptive curriculum on
hard negatives. Defaults s = 64, m = 0.5.

With x = cos θ_y (clamped to [-1, 1]) and cos(θ_y + m) = x · cos m - sqrt(1 - x²) · sin m:

- target: cos(θ_y + m) if x > cos(π - m), else the linear "threshold" fallback x - sin(π - m) · m;
- running t (buffer, init 0), updated under no-grad on every training forward **before** it is used:
  t ← 0.01 · mean(cos θ_y) + 0.99 · t (the official code's weight on the new batch; the mean over the
  global batch when ``gather_batch`` is set, see :class:`~marginlab.heads.base.MarginHead`);
- hard negatives (cos θ_j > cos(θ_y + m), j ≠ y): cos θ_j → cos θ_j · (t + cos θ_j) (gradient flows
  through both factors; t is a constant); easy negatives unchanged;
- every logit × s.

Eval mode leaves t unchanged and still modulates hard negatives with the current t.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from marginlab.heads.base import ANGULAR_MARGIN_RANGE, SCALE_RANGE, MarginHead
from marginlab.heads.registry import register_head


@register_head
class CurricularFace(MarginHead):
    """CurricularFace head; ``t`` is a registered buffer (saved in the state dict)."""

    name = "curricularface"
    order = 30
    # Early in training (t = 0: hard negatives damped) and later (t = 0.5).
    gst_variants = ({"t": 0.0}, {"t": 0.5})
    analysis_state_keys = frozenset({"t"})
    hyperparameter_ranges = {"s": SCALE_RANGE, "m": ANGULAR_MARGIN_RANGE}
    t_momentum = 0.01

    def __init__(self, embedding_size: int, num_classes: int, *, s: float = 64.0, m: float = 0.5):
        super().__init__(embedding_size, num_classes, s=s)
        self.m = self.check_hyperparameters({"m": m})["m"]
        self.register_buffer("t", torch.zeros(()))

    @property
    def hyperparameters(self) -> dict[str, float]:
        return {"s": self.s, "m": self.m}

    def _analysis_state(self, variant: dict[str, float], batch: int) -> None:
        if "t" in variant:
            self.t.fill_(float(variant["t"]))
        return None

    def _cos_plus_margin(self, cos_y: torch.Tensor) -> torch.Tensor:
        x = cos_y.clamp(-1.0, 1.0)
        sin = torch.sqrt((1.0 - x * x).clamp_min(1e-12))
        return x * math.cos(self.m) - sin * math.sin(self.m)

    def _target_logits(self, cos_y: torch.Tensor, norms: Optional[torch.Tensor], quality) -> torch.Tensor:
        cos_m = self._cos_plus_margin(cos_y)
        fallback = cos_y - math.sin(math.pi - self.m) * self.m
        return self.s * torch.where(cos_y > math.cos(math.pi - self.m), cos_m, fallback)

    def _nontarget_logits(self, logits: torch.Tensor, cos_y: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                mean_cos = self.gather_batch(cos_y.detach()).mean().to(self.t.dtype)
                self.t.mul_(1.0 - self.t_momentum).add_(self.t_momentum * mean_cos)
        with torch.no_grad():
            threshold = (self.s * self._cos_plus_margin(cos_y)).to(logits.dtype).unsqueeze(1)
            hard = logits > threshold
        t = self.t.to(logits.dtype)
        # logits = s·cos θ_j, so s·cos θ_j·(t + cos θ_j) = t·logits + logits² / s.
        return torch.where(hard, torch.addcmul(logits * t, logits, logits, value=1.0 / self.s), logits)

    def state_summary(self) -> dict[str, float]:
        return {"t": float(self.t)}
