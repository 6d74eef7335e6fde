"""AdaFace (Kim, Jain, Liu, CVPR 2022): a margin function that adapts to image quality, with the feature
norm as the quality proxy. Defaults (paper): m = 0.4, h = 0.333, s = 64, t_alpha = 0.01.

Per sample, with eps = 1e-3 and x = cos θ_y clamped to [-1 + eps, 1 - eps]:

1. quality signal q: the **detached** feature norm clipped to [0.001, 100] (default), or the caller's
   ``quality`` tensor (also detached; see "Quality proxies" below);
2. running statistics (training mode only, under no-grad, **before** use), with the released code's
   convention of t_alpha = 0.01 on the current batch (the paper's "α = 0.99" is the weight on the past):
   μ ← t_alpha · mean(q) + (1 - t_alpha) · μ ;  σ ← t_alpha · std(q, unbiased) + (1 - t_alpha) · σ;
3. ẑ = clip(h · (q - μ) / (σ + eps), -1, 1);
4. g_angle = -m · ẑ, g_add = m · ẑ + m;
5. target logit s · (cos(clip(θ_y + g_angle, eps, π - eps)) - g_add)  (the authors' corrected Eq. 18);
   non-target logits s · cos θ_j.

So ẑ = -1 is ArcFace(m), ẑ = 0 is CosFace(m) and ẑ = +1 is s · (cos(θ - m) - 2m). No gradient flows
through the norm into the margin. Eval mode uses μ, σ as they are and changes nothing. μ and σ are
registered buffers (state dict round trip). Under data-parallel training they are per process and
rank 0's are broadcast at each forward, as in the official code, unless ``gather_batch`` is set
(``train.distributed.sync_head_stats``): then the statistics are taken over the global batch.
A batch of one sample has no unbiased std: σ is then left unchanged (μ is still updated).

Quality proxies (paper Table 1 ablation). The signal replaces the norm in steps 2–3 unchanged:

- ``norm`` (``quality=None``): the raw clipped norm in [0.001, 100]; μ, σ start at 20 and 100 (official).
- ``brisque``: the caller passes IQ = 1 - clip(BRISQUE, 0, 100) / 100 in [0, 1] (higher = better);
- ``p_yi``: the caller passes the target-class softmax probability in [0, 1]
  (:func:`marginlab.heads.p_yi.p_yi_quality`).

The norm's initial μ = 20, σ = 100 are meaningless for a signal in [0, 1]: ẑ = h · (q - 20) / 100 ≈ -0.066
for every sample, so the margin would barely adapt for the first several hundred steps while the EMA
forgets the init. So for an external signal the running statistics are
**initialised from the first training batch** that has at least two samples: μ = mean(q), σ = std(q)
(unbiased) — which is exactly what the EMA step gives when μ and σ already equal those values. A
one-sample first batch only sets μ and leaves initialisation pending. The buffer ``stats_source``
records which signal the statistics describe (0 = not yet initialised, 1 = norm, 2 = external
quality); switching signals on a head in training mode raises ``ValueError`` rather than mixing
units in one EMA.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from marginlab.heads.base import ANGULAR_MARGIN_RANGE, SCALE_RANGE, MarginHead, Range, cos_shifted_angle
from marginlab.heads.registry import register_head

SOURCE_NONE, SOURCE_NORM, SOURCE_QUALITY = 0, 1, 2
_SOURCE_NAMES = {SOURCE_NONE: "none", SOURCE_NORM: "the feature norm", SOURCE_QUALITY: "an external quality signal"}


@register_head
class AdaFace(MarginHead):
    """AdaFace head; ``batch_mean``, ``batch_std`` and ``stats_source`` are registered buffers."""

    name = "adaface"
    order = 50
    # ẑ at both ends and the middle: ArcFace-like (-1), CosFace (0), negative angular margin (+1).
    gst_variants = ({"z_hat": -1.0}, {"z_hat": 0.0}, {"z_hat": 1.0})
    analysis_state_keys = frozenset({"z_hat", "norm", "mu", "sigma"})
    # h scales the batch z-score of the norm before the clip to [-1, 1]: the paper's ablation spans
    # 0.22..1 (h = 0 would be CosFace: use that head).
    hyperparameter_ranges = {
        "s": SCALE_RANGE, "m": ANGULAR_MARGIN_RANGE, "h": Range(low=0.0, high=1.0, low_open=True),
        "t_alpha": Range(low=0.0, high=1.0, low_open=True),
    }
    accepts_quality = True
    eps = 1e-3
    norm_clip = (0.001, 100.0)
    init_mean = 20.0
    init_std = 100.0

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        *,
        s: float = 64.0,
        m: float = 0.4,
        h: float = 0.333,
        t_alpha: float = 0.01,
    ):
        super().__init__(embedding_size, num_classes, s=s)
        checked = self.check_hyperparameters({"m": m, "h": h, "t_alpha": t_alpha})
        self.m, self.h, self.t_alpha = checked["m"], checked["h"], checked["t_alpha"]
        self.register_buffer("batch_mean", torch.full((), self.init_mean))
        self.register_buffer("batch_std", torch.full((), self.init_std))
        self.register_buffer("stats_source", torch.zeros((), dtype=torch.int64))
        self._source_cache: Optional[int] = None  # host mirror of stats_source (avoids a device sync per step)

    @property
    def hyperparameters(self) -> dict[str, float]:
        return {"s": self.s, "m": self.m, "h": self.h, "t_alpha": self.t_alpha}

    def _analysis_state(self, variant: dict[str, float], batch: int) -> torch.Tensor:
        """``{"z_hat": q}`` (ẑ itself, q in [-1, 1]) or ``{"norm": a[, "mu": μ, "sigma": σ]}`` (a raw
        norm with the given running statistics; μ, σ default to the initial 20 and 100)."""
        if "z_hat" in variant:
            if set(variant) != {"z_hat"}:
                raise ValueError("GST variant for 'adaface': give either {'z_hat'} or {'norm', 'mu', 'sigma'}, not both")
            q = float(variant["z_hat"])
            if not -1.0 <= q <= 1.0:
                raise ValueError(f"GST variant z_hat={q} is outside [-1, 1]")
            # μ = 50, σ + eps = 1 and ||z|| = 50 + ẑ/h give h·(||z|| - μ)/(σ + eps) = ẑ (inside the norm clip).
            self.batch_mean.fill_(50.0)
            self.batch_std.fill_(1.0 - self.eps)
            norm = 50.0 + q / self.h
        else:
            if "norm" not in variant:
                raise ValueError("GST for 'adaface' needs {'z_hat': q} or {'norm': a[, 'mu': μ, 'sigma': σ]}")
            self.batch_mean.fill_(float(variant.get("mu", self.init_mean)))
            self.batch_std.fill_(float(variant.get("sigma", self.init_std)))
            norm = float(variant["norm"])
        return torch.full((batch,), norm, dtype=self.weight.dtype)

    # ------------------------------------------------------------------ running statistics
    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._source_cache = None

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .double() replace the buffers
        out = super()._apply(fn, *args, **kwargs)
        self._source_cache = None
        return out

    def _source(self) -> int:
        if self._source_cache is None:
            self._source_cache = int(self.stats_source)
        return self._source_cache

    def _set_source(self, source: int) -> None:
        self.stats_source.fill_(source)
        self._source_cache = source

    @torch.no_grad()
    def update_statistics(self, signal: torch.Tensor, *, external: bool) -> None:
        """One EMA step of μ, σ on ``signal`` (B,) (see the module docstring for the first-batch rule)."""
        source = SOURCE_QUALITY if external else SOURCE_NORM
        current = self._source()
        if current not in (SOURCE_NONE, source):
            raise ValueError(
                f"head 'adaface': running statistics were built from {_SOURCE_NAMES[current]} but this training "
                f"step passes {_SOURCE_NAMES[source]}; use one quality signal per head (or a fresh head)"
            )
        signal = self.gather_batch(signal.to(self.batch_mean.dtype))
        n = signal.numel()
        mean = signal.mean()
        if current == SOURCE_NONE and external:
            self.batch_mean.copy_(mean)
            if n >= 2:
                self.batch_std.copy_(signal.std())
                self._set_source(source)
            return
        a = self.t_alpha
        self.batch_mean.mul_(1.0 - a).add_(a * mean)
        if n >= 2:
            self.batch_std.mul_(1.0 - a).add_(a * signal.std())
        if current == SOURCE_NONE:
            self._set_source(source)

    def margin_scaler(self, signal: torch.Tensor) -> torch.Tensor:
        """ẑ = clip(h · (signal - μ) / (σ + eps), -1, 1) with the current running statistics."""
        mu = self.batch_mean.to(signal.dtype)
        sigma = self.batch_std.to(signal.dtype)
        return (self.h * (signal - mu) / (sigma + self.eps)).clamp(-1.0, 1.0)

    def target_from_scaler(self, cos_y: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
        """s · (cos(clip(θ_y - m·ẑ, eps, π - eps)) - (m·ẑ + m)) for a given ẑ (B,) or scalar."""
        g_angle = -self.m * z_hat
        g_add = self.m * z_hat + self.m
        return self.s * (cos_shifted_angle(cos_y, g_angle, self.eps) - g_add)

    def _target_logits(
        self, cos_y: torch.Tensor, norms: Optional[torch.Tensor], quality: Optional[torch.Tensor]
    ) -> torch.Tensor:
        if quality is None:
            if norms is None:
                raise ValueError("head 'adaface' needs the feature norms or a quality signal (norms=... or quality=...)")
            signal = norms.detach().clamp(*self.norm_clip)
        else:
            signal = quality.detach().to(cos_y.dtype)
        if self.training:
            self.update_statistics(signal, external=quality is not None)
        return self.target_from_scaler(cos_y, self.margin_scaler(signal))

    def state_summary(self) -> dict[str, float]:
        return {"batch_mean": float(self.batch_mean), "batch_std": float(self.batch_std)}
