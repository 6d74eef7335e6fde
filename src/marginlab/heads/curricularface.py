"""CurricularFace (Huang et al., CVPR 2020): angular margin on the target plus an adaptive curriculum on
hard negatives. Defaults s = 64, m = 0.5.

With x = cos θ_y (clamped to [-1, 1]) and cos(θ_y + m) = x · cos m - sqrt(1 - x²) · sin m:

- target: cos(θ_y + m) if x > cos(π - m), else the linear "threshold" fallback x - sin(π - m) · m;
- running t (buffer), updated under no-grad on every training forward **before** it is used:
  t ← a · mean(cos θ_y) + (1 - a) · t (the mean over the global batch when ``gather_batch`` is set, see
  :class:`~marginlab.heads.base.MarginHead`). How t starts is ``stats_init``
  (:data:`~marginlab.head_specs.STATS_INIT`, rate a from :func:`~marginlab.heads.base.ema_rate`):
  ``official`` (default, the released code) t = 0 and a = 0.01 throughout, so t forgets its start with a
  time constant of 100 steps: the first 0.04 % of the paper's run, but the whole of a 108-step CPU run,
  where t would stay far below the mean cosine it is meant to track; ``first_batch`` t = the first
  batch's mean cos θ_y, then a = 0.01; ``bias_corrected`` the zero-started EMA divided by its bias
  1 - 0.99^k (the average of all batches so far until ~100 steps, then the official EMA). ``t_updates``
  counts the updates (state dict);
- hard negatives (cos θ_j > cos(θ_y + m), j ≠ y): cos θ_j → cos θ_j · (t + cos θ_j) (gradient flows
  through both factors; t is a constant); easy negatives unchanged;
- every logit × s.

Eval mode leaves t unchanged and still modulates hard negatives with the current t.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from marginlab.heads.base import MarginHead, ema_rate
from marginlab.heads.registry import register_head


@register_head
class CurricularFace(MarginHead):
    """CurricularFace head; ``t`` is a registered buffer (saved in the state dict)."""

    name = "curricularface"
    # Early in training (t = 0: hard negatives damped) and later (t = 0.5).
    gst_variants = ({"t": 0.0}, {"t": 0.5})
    analysis_state_keys = frozenset({"t"})
    t_momentum = 0.01

    def __init__(self, embedding_size: int, num_classes: int, **hyperparameters):
        super().__init__(embedding_size, num_classes, **hyperparameters)
        self.register_buffer("t", torch.zeros(()))
        self.register_buffer("t_updates", torch.zeros((), dtype=torch.int64))
        self._updates: Optional[int] = None  # host mirror of t_updates

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "t_updates" not in state_dict and prefix + "t" in state_dict:  # saved before the counter existed
            state_dict[prefix + "t_updates"] = torch.full((), 10**6, dtype=torch.int64)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._updates = None

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._updates = None
        return out

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
                if self._updates is None:
                    self._updates = int(self.t_updates)
                a = ema_rate(self.stats_init, self.t_momentum, self._updates)
                self.t.mul_(1.0 - a).add_(a * mean_cos)
                self._updates += 1
                self.t_updates.fill_(self._updates)
        with torch.no_grad():
            threshold = (self.s * self._cos_plus_margin(cos_y)).to(logits.dtype).unsqueeze(1)
            hard = logits > threshold
        t = self.t.to(logits.dtype)
        # logits = s·cos θ_j, so s·cos θ_j·(t + cos θ_j) = t·logits + logits² / s.
        return torch.where(hard, torch.addcmul(logits * t, logits, logits, value=1.0 / self.s), logits)

    def state_summary(self) -> dict[str, float]:
        return {"t": float(self.t)}
