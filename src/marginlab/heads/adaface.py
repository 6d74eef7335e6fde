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

How the statistics start (``stats_init``, :data:`marginlab.head_specs.STATS_INIT`, recorded with the other
hyperparameters in ``model.pt``):

- ``official`` (default, the released code): μ = 20, σ = 100, then the EMA. The EMA forgets that start
  with a time constant of 1/t_alpha = 100 steps: σ needs ~500 steps to come within 2× of the norms'
  own spread (~3-4). In the paper's run (~270k steps) that is the first 0.2 % of training; in a
  108-step CPU run it is longer than the run, so ẑ stays within a few hundredths of 0 and the head
  trains as CosFace(m) (measured: ``bench/RESULTS.md``, issue #22).
- ``first_batch``: μ, σ are the first training batch's own mean and std, then the EMA.
- ``bias_corrected``: the EMA started at 0 and divided by 1 - (1 - t_alpha)^k after k updates
  (:func:`~marginlab.heads.base.ema_rate`): it starts at the first batch like ``first_batch`` but does
  not then hold that one batch's values for ~100 steps; it averages all batches so far (the lower
  noise of a long window) until ~1/t_alpha steps and is the official EMA afterwards. So the statistics
  describe the current norms from step 1 at any run length, as the official ones do after the paper's
  first 0.2 %. The CPU presets use it; the paper presets keep ``official``.

The norm's official μ = 20, σ = 100 are meaningless for a signal in [0, 1] (ẑ = h · (q - 20) / 100 ≈
-0.066 for every sample), so for an external signal ``official`` means ``first_batch``. μ and σ count
their updates separately (``mean_updates``, ``std_updates``: a one-sample batch updates μ only). The
buffer ``stats_source`` records which signal the statistics describe (0 = not yet initialised, 1 = norm,
2 = external quality); switching signals on a head in training mode raises ``ValueError`` rather than
mixing units in one EMA.
"""

from __future__ import annotations

from typing import Optional

import torch

from marginlab.heads.base import MarginHead, cos_shifted_angle, ema_rate
from marginlab.heads.registry import register_head

SOURCE_NONE, SOURCE_NORM, SOURCE_QUALITY = 0, 1, 2
_SOURCE_NAMES = {SOURCE_NONE: "none", SOURCE_NORM: "the feature norm", SOURCE_QUALITY: "an external quality signal"}


@register_head
class AdaFace(MarginHead):
    """AdaFace head; ``batch_mean``, ``batch_std`` and ``stats_source`` are registered buffers."""

    name = "adaface"
    # ẑ at both ends and the middle: ArcFace-like (-1), CosFace (0), negative angular margin (+1).
    gst_variants = ({"z_hat": -1.0}, {"z_hat": 0.0}, {"z_hat": 1.0})
    analysis_state_keys = frozenset({"z_hat", "norm", "mu", "sigma"})
    accepts_quality = True
    eps = 1e-3
    norm_clip = (0.001, 100.0)
    init_mean = 20.0
    init_std = 100.0

    def __init__(self, embedding_size: int, num_classes: int, **hyperparameters):
        super().__init__(embedding_size, num_classes, **hyperparameters)
        self.register_buffer("batch_mean", torch.full((), self.init_mean))
        self.register_buffer("batch_std", torch.full((), self.init_std))
        self.register_buffer("stats_source", torch.zeros((), dtype=torch.int64))
        self.register_buffer("mean_updates", torch.zeros((), dtype=torch.int64))
        self.register_buffer("std_updates", torch.zeros((), dtype=torch.int64))
        self._host: Optional[dict[str, int]] = None  # host mirror of the int buffers (avoids a device sync per step)

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
    _COUNTERS = ("stats_source", "mean_updates", "std_updates")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A model saved before the update counters existed: its statistics have been updated an unknown
        # number of times, which only ``bias_corrected`` reads; count them as many (the official EMA).
        for key in ("mean_updates", "std_updates"):
            if prefix + key not in state_dict and prefix + "batch_mean" in state_dict:
                state_dict[prefix + key] = torch.full((), 10**6, dtype=torch.int64)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._host = None

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .double() replace the buffers
        out = super()._apply(fn, *args, **kwargs)
        self._host = None
        return out

    def _counter(self, name: str) -> int:
        if self._host is None:
            self._host = {k: int(getattr(self, k)) for k in self._COUNTERS}
        return self._host[name]

    def _set_counter(self, name: str, value: int) -> None:
        self._counter(name)
        getattr(self, name).fill_(value)
        self._host[name] = value

    def _source(self) -> int:
        return self._counter("stats_source")

    def _set_source(self, source: int) -> None:
        self._set_counter("stats_source", source)

    @torch.no_grad()
    def update_statistics(self, signal: torch.Tensor, *, external: bool) -> None:
        """One update of μ, σ on ``signal`` (B,) at the rate :func:`~marginlab.heads.base.ema_rate` gives for
        ``stats_init`` and the updates so far (module docstring)."""
        source = SOURCE_QUALITY if external else SOURCE_NORM
        current = self._source()
        if current not in (SOURCE_NONE, source):
            raise ValueError(
                f"head 'adaface': running statistics were built from {_SOURCE_NAMES[current]} but this training "
                f"step passes {_SOURCE_NAMES[source]}; use one quality signal per head (or a fresh head)"
            )
        signal = self.gather_batch(signal.to(self.batch_mean.dtype))
        n = signal.numel()
        init = "first_batch" if external and self.stats_init == "official" else self.stats_init
        done = self._counter("mean_updates")
        a = ema_rate(init, self.t_alpha, done)
        self.batch_mean.mul_(1.0 - a).add_(a * signal.mean())
        self._set_counter("mean_updates", done + 1)
        if n >= 2:
            done = self._counter("std_updates")
            a = ema_rate(init, self.t_alpha, done)
            self.batch_std.mul_(1.0 - a).add_(a * signal.std())
            self._set_counter("std_updates", done + 1)
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

    @torch.no_grad()
    def z_hat_of(self, signal: torch.Tensor, *, external: bool = False) -> torch.Tensor:
        """ẑ the margin gives each value of ``signal`` (feature norms, or with ``external`` the quality signal
        the head trains with) under the running statistics as they are now; nothing is updated."""
        signal = signal.to(self.batch_mean.device, self.batch_mean.dtype)
        return self.margin_scaler(signal if external else signal.clamp(*self.norm_clip))
