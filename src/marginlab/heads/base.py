"""Shared machinery of the margin heads: class centres, cosine logits and the target-column margin.

Every head maps unnormalised embeddings z (B, D) and integer labels y (B,) to scaled logits (B, C)
for ``F.cross_entropy``::

    ẑ = z / ||z||,  ŵ_j = W_j / ||W_j||,  cos θ_j = ŵ_j · ẑ
    logit_j = s · cos θ_j                       (j ≠ y; CurricularFace modulates hard negatives)
    logit_y = s · f(cos θ_y [, ||z|| or quality])  (the head's margin function)

Implementation (one job per step, no Python loop over the batch):

1. One matrix product ``F.linear(s · ẑ, W)`` scaled per column by 1/||W_j|| gives all s · cos θ_j, i.e.
   ``F.linear(s · ẑ, ŵ)`` without materialising ŵ (C×D). The scale is folded into the B×D embeddings.
   Under autocast the product runs in the autocast dtype; the result is cast back to float32 (float64
   if the head/embeddings are float64). :class:`NormalizedLinear` does this with a hand-written
   backward: the gradient of the row normalisation of W is the tangent projection
   ``dW_j = A_j - (ŵ_j · A_j) ŵ_j / ||W_j||`` (A = the plain linear gradient), two fused C×D passes
   instead of autograd's half-dozen — what keeps a head within ~1.1–1.3× of a plain linear + CE step.
2. ``cos θ_y`` is recomputed in the compute dtype (≥ float32) from ``W[y]`` (B×D gather), so the margin
   math never sees half precision.
3. The head's margin function turns ``cos θ_y`` into the target logit (B,), which is scattered into the
   target column; no dense one-hot over the C classes is built.

:meth:`MarginHead.logits_from_cosines` runs steps 2–3 on a given cosine matrix; it is the same code path
as :meth:`MarginHead.forward` and what :mod:`marginlab.analysis.gst` differentiates.

Class centres are initialised as in the official AdaFace code: uniform(-1, 1), then every class vector
renormalised to unit L2 norm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from marginlab.head_specs import STATS_INIT, HeadSpec
from marginlab.core.hyperparameters import format_hyperparameter

__all__ = ["MarginHead", "NormalizedLinear", "compute_dtype", "cos_shifted_angle", "ema_rate"]


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype of the margin math: float64 if any input is float64, else float32 (never half)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def ema_rate(init: str, alpha: float, done: int) -> float:
    """The weight of the new batch in the ``done + 1``-th update of a running statistic started as ``init``
    (:data:`STATS_INIT`): ``official`` always α; ``first_batch`` 1 (the batch's own value), then α;
    ``bias_corrected`` α / (1 − (1 − α)^(done+1)): μ_k = μ_{k−1} + a_k (x_k − μ_{k−1}) with this a_k is
    exactly the zero-started EMA divided by its bias 1 − (1 − α)^k, so it also starts at the first batch
    and weighs all batches so far about equally until ~1/α updates, then becomes the official EMA."""
    if init == "official":
        return alpha
    if init == "first_batch":
        return 1.0 if done == 0 else alpha
    if init == "bias_corrected":  # exactly 1 at the first update (α / (1 - (1 - α)) rounds below it)
        return 1.0 if done == 0 else alpha / (1.0 - (1.0 - alpha) ** (done + 1))
    raise ValueError(f"unknown statistics start {init!r}; expected one of {', '.join(STATS_INIT.options)}")


class NormalizedLinear(torch.autograd.Function):
    """``(s · cos θ (B, C), cos θ_y (B,), ||z|| (B,)) = NormalizedLinear.apply(z, weight, labels, s)``.

    ``z`` are the unnormalised embeddings (B, D) in the compute dtype, ``weight`` the raw class centres
    (C, D). Forward: ||z||, ẑ = z / ||z||, inv_j = 1 / ||W_j||, dense = (s·ẑ) Wᵀ · inv (one matrix
    product, in the autocast dtype when autocast is on), cos θ_y = inv_y · (ẑ · W_y) in the compute
    dtype (full precision for the margin). Norms are clamped below at 1e-12.

    Backward, with u = s·ẑ and G = ∂L/∂(u · W_j) = g_dense · inv (+ g_cos_y · inv_y / s on the target
    entries): ∂L/∂ẑ = s · G W; A = Gᵀ u; ∂L/∂W_j = A_j - inv_j² (W_j · A_j) W_j (derivative of the row
    normalisation); ∂L/∂z = (∂L/∂ẑ - (ẑ · ∂L/∂ẑ) ẑ) / ||z|| + g_norm · ẑ. The matrix products run in the
    forward product's dtype, as autocast's would. Fusing both normalisations keeps the op count (and so
    the overhead over a plain linear layer) small. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, scale: float):
        dtype = z.dtype
        w = weight.to(dtype)
        norms = torch.linalg.vector_norm(z, dim=1)
        inv_z = norms.clamp_min(1e-12).reciprocal().unsqueeze(1)
        z_hat = z * inv_z
        inv = torch.linalg.vector_norm(w, dim=1).clamp_min(1e-12).reciprocal()
        u = z_hat * scale
        raw = F.linear(u, w)
        ctx.mm_dtype = raw.dtype
        dense = (raw if raw.dtype == dtype else raw.to(dtype)).mul_(inv)
        cos_y = (z_hat * w.index_select(0, labels)).sum(dim=1) * inv.index_select(0, labels)
        ctx.save_for_backward(z_hat, inv_z, w, inv, labels)
        ctx.scale = scale
        ctx.weight_dtype = weight.dtype
        return dense, cos_y, norms

    @staticmethod
    @once_differentiable
    def backward(ctx, g_dense: torch.Tensor, g_cos_y: torch.Tensor, g_norms: torch.Tensor):
        z_hat, inv_z, w, inv, labels = ctx.saved_tensors
        s = ctx.scale
        mm = ctx.mm_dtype
        G = g_dense * inv if g_dense is not None else z_hat.new_zeros(z_hat.shape[0], w.shape[0])
        if g_cos_y is not None:
            rows = torch.arange(labels.shape[0], device=labels.device)
            G.index_put_((rows, labels), g_cos_y * inv.index_select(0, labels) / s, accumulate=True)
        Gm = G.to(mm)
        grad_z = None
        if ctx.needs_input_grad[0]:
            g_hat = (Gm @ w.to(mm)).to(z_hat.dtype).mul_(s)
            radial = (z_hat * g_hat).sum(dim=1, keepdim=True)
            if g_norms is not None:  # + g_norm · ẑ, folded into the projection's coefficient
                radial = radial - g_norms.unsqueeze(1) / inv_z
            grad_z = g_hat.sub_(z_hat * radial).mul_(inv_z)
        grad_w = None
        if ctx.needs_input_grad[1]:
            A = (Gm.t() @ (z_hat * s).to(mm)).to(z_hat.dtype)
            radial_w = torch.einsum("cd,cd->c", w, A) * inv * inv
            grad_w = A.addcmul_(w, radial_w.unsqueeze(1), value=-1.0).to(ctx.weight_dtype)
        return grad_z, grad_w, None, None


class MarginHead(nn.Module):
    """Base class: class centres ``weight`` (C, D), the cosine logits and the target-column scatter.

    Subclasses set ``name`` and implement :meth:`_target_logits` (the scaled target logit from
    ``cos θ_y``); they may override :meth:`_nontarget_logits` (CurricularFace), :meth:`regularizer`
    (MagFace) and :meth:`state_summary`. Only heads with ``accepts_quality = True`` (AdaFace) take a
    ``quality`` signal.
    """

    name: str = "base"
    accepts_quality: bool = False
    #: The head's declaration (name, hyperparameters with defaults and ranges), from
    #: :data:`marginlab.head_specs.HEAD_SPECS`; set by :func:`~marginlab.heads.registry.register_head`.
    spec: ClassVar[HeadSpec]
    #: Running-state variants the gradient-scaling analysis shows by default (Fig. 3); each is a mapping
    #: for :meth:`set_analysis_state` (``{}``: the head has no state that changes its margin).
    gst_variants: ClassVar[tuple[dict[str, float], ...]] = ({},)
    #: The keys :meth:`set_analysis_state` accepts.
    analysis_state_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def check_hyperparameters(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` checked against the spec's ranges and relations (see :meth:`HeadSpec.check`)."""
        return cls.spec.check(values)

    def __init__(self, embedding_size: int, num_classes: int, **hyperparameters: Any):
        """Every hyperparameter of the spec becomes an attribute (``self.s``, ``self.m``, ...): the
        given values over the spec's defaults, checked; unknown names raise ``ValueError``."""
        super().__init__()
        for key, val in (("embedding_size", embedding_size), ("num_classes", num_classes)):
            if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
                raise ValueError(f"head {self.name!r}: {key} must be a positive int, got {val!r}")
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        for key, value in self.spec.resolve(hyperparameters).items():
            setattr(self, key, value)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        #: Data-parallel training with ``train.distributed.sync_head_stats`` sets this to a function that
        #: concatenates a per-sample tensor over all processes, so running batch statistics (AdaFace μ/σ,
        #: CurricularFace t) are computed on the global batch; None = this process's batch.
        self.batch_gather: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self.reset_parameters()

    # ------------------------------------------------------------------ parameters
    def reset_parameters(self) -> None:
        """Official init: uniform(-1, 1), then each class vector scaled to unit L2 norm."""
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)
            self.weight.div_(self.weight.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The head's hyperparameters by their ``build_head`` names (rebuilds an identical head)."""
        return {key: getattr(self, key) for key in self.spec.hyperparameters}

    def extra_repr(self) -> str:
        hp = ", ".join(f"{k}={format_hyperparameter(v)}" for k, v in self.hyperparameters.items())
        return f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, {hp}"

    # ------------------------------------------------------------------ analysis
    @classmethod
    def analysis_variants(cls, hyperparameters: Mapping[str, float]) -> tuple[dict[str, float], ...]:
        """The GST variants to show for a head with these hyperparameters (default: :attr:`gst_variants`)."""
        return tuple(dict(v) for v in cls.gst_variants)

    def set_analysis_state(self, variant: Mapping[str, float], batch: int) -> Optional[torch.Tensor]:
        """Put this head in the running state ``variant`` names (for the GST analysis on a toy copy).

        Returns the feature norms (B,) to pass to :meth:`logits_from_cosines`, or None when the margin
        does not depend on them. The base heads have no state: ``variant`` must be empty.
        """
        unknown = set(variant) - self.analysis_state_keys
        if unknown:
            allowed = sorted(self.analysis_state_keys)
            raise ValueError(f"GST variant keys {sorted(unknown)} do not apply to head {self.name!r}; "
                             f"allowed: {allowed if allowed else 'none (use {})'}")
        return self._analysis_state(dict(variant), batch)

    def _analysis_state(self, variant: dict[str, float], batch: int) -> Optional[torch.Tensor]:
        return None

    # ------------------------------------------------------------------ checks
    def _check_labels(self, labels: torch.Tensor, batch: int) -> None:
        if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32, torch.int16,
                                                                         torch.int8, torch.uint8):
            got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"head {self.name!r}: labels must be an integer tensor (B,), got {got}")
        if labels.shape != (batch,):
            raise ValueError(f"head {self.name!r}: labels must have shape ({batch},), got {tuple(labels.shape)}")
        # A range check needs the values on the host; on accelerators the gather raises instead (no sync).
        if labels.device.type == "cpu" and batch:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(
                    f"head {self.name!r}: labels must lie in [0, {self.num_classes - 1}], got values in [{lo}, {hi}]"
                )

    def _check_quality(self, quality: Optional[torch.Tensor], batch: int) -> Optional[torch.Tensor]:
        if quality is None:
            return None
        if not self.accepts_quality:
            raise ValueError(
                f"head {self.name!r} takes no quality signal (only 'adaface' does); pass quality=None"
            )
        if not isinstance(quality, torch.Tensor) or not quality.is_floating_point():
            raise ValueError(f"head {self.name!r}: quality must be a float tensor of shape ({batch},)")
        if quality.shape != (batch,):
            raise ValueError(f"head {self.name!r}: quality must have shape ({batch},), got {tuple(quality.shape)}")
        if quality.device.type == "cpu":
            if not bool(torch.isfinite(quality).all()):
                raise ValueError(f"head {self.name!r}: quality contains NaN or infinite values")
        else:  # checked on the device without a host sync
            torch._assert_async(torch.isfinite(quality).all(), f"head {self.name!r}: quality is not finite")
        return quality.detach()

    def gather_batch(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (B, ...) of this process's batch, or of the global batch when :attr:`batch_gather` is set."""
        return values if self.batch_gather is None else self.batch_gather(values)

    # ------------------------------------------------------------------ logits
    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Plain cosine matrix cos θ (B, C) between normalised embeddings and class centres (no scale)."""
        dtype = compute_dtype(embeddings, self.weight)
        return F.linear(F.normalize(embeddings.to(dtype), dim=1), F.normalize(self.weight.to(dtype), dim=1)).to(dtype)

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, quality: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Scaled, margin-adjusted logits (B, C) of unnormalised ``embeddings`` (B, D) for ``labels`` (B,)."""
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_size:
            got = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise ValueError(f"head {self.name!r}: embeddings must have shape (B, {self.embedding_size}), got {got}")
        batch = embeddings.shape[0]
        self._check_labels(labels, batch)
        quality = self._check_quality(quality, batch)
        dtype = compute_dtype(embeddings, self.weight)
        labels = labels.long()
        logits, cos_y, norms = NormalizedLinear.apply(embeddings.to(dtype), self.weight, labels, self.s)
        return self._apply_margin(logits, cos_y, labels, norms, quality)

    def logits_from_cosines(
        self,
        cos: torch.Tensor,
        labels: torch.Tensor,
        *,
        norms: Optional[torch.Tensor] = None,
        quality: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The head's logits for a given cosine matrix ``cos`` (B, C) — the forward without the embedding.

        ``norms`` (B,) are the feature norms ||z|| (needed by AdaFace without ``quality`` and by MagFace).
        Same margin code as :meth:`forward`; gradients flow into ``cos`` (and into ``norms`` where the head's
        margin depends on the norm with gradient, i.e. MagFace). Training mode updates running state.
        """
        if cos.dim() != 2 or cos.shape[1] != self.num_classes:
            raise ValueError(f"head {self.name!r}: cos must have shape (B, {self.num_classes}), got {tuple(cos.shape)}")
        batch = cos.shape[0]
        self._check_labels(labels, batch)
        quality = self._check_quality(quality, batch)
        dtype = compute_dtype(cos)
        cos = cos.to(dtype)
        labels = labels.long()
        if norms is not None:
            if norms.shape != (batch,):
                raise ValueError(f"head {self.name!r}: norms must have shape ({batch},), got {tuple(norms.shape)}")
            norms = norms.to(dtype)
        cos_y = cos.gather(1, labels.unsqueeze(1)).squeeze(1)
        return self._apply_margin(cos * self.s, cos_y, labels, norms, quality)

    def _apply_margin(
        self,
        logits: torch.Tensor,
        cos_y: torch.Tensor,
        labels: torch.Tensor,
        norms: Optional[torch.Tensor],
        quality: Optional[torch.Tensor],
    ) -> torch.Tensor:
        target = self._target_logits(cos_y, norms, quality)
        logits = self._nontarget_logits(logits, cos_y)
        # In place: neither F.linear nor a scalar multiply needs its output for the backward pass.
        return logits.scatter_(1, labels.unsqueeze(1), target.to(logits.dtype).unsqueeze(1))

    def _target_logits(
        self, cos_y: torch.Tensor, norms: Optional[torch.Tensor], quality: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Scaled target logit s · f(cos θ_y) (B,) in the dtype of ``cos_y``."""
        raise NotImplementedError

    def _nontarget_logits(self, logits: torch.Tensor, cos_y: torch.Tensor) -> torch.Tensor:
        """Hook for heads that change non-target logits (CurricularFace); default: s · cos θ_j unchanged."""
        return logits

    # ------------------------------------------------------------------ extras
    def regularizer(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Extra loss term added to the cross-entropy (MagFace); a zero scalar for the other heads."""
        return torch.zeros((), dtype=compute_dtype(embeddings), device=embeddings.device)

    def state_summary(self) -> dict[str, float]:
        """Running state worth logging (AdaFace batch_mean/batch_std, CurricularFace t); {} otherwise."""
        return {}


def cos_shifted_angle(cos_y: torch.Tensor, shift: torch.Tensor | float, eps: float) -> torch.Tensor:
    """cos(θ') with θ = arccos(clamp(cos_y, -1+eps, 1-eps)) and θ' = clamp(θ + shift, eps, π - eps).

    The clip convention of the official AdaFace code (for both its ArcFace and AdaFace heads): the
    shifted angle is kept inside (0, π), so a target pushed past π keeps the value cos(π - eps) and
    gets no gradient from the margin term.
    """
    theta = torch.acos(cos_y.clamp(-1.0 + eps, 1.0 - eps))
    return torch.cos((theta + shift).clamp(eps, math.pi - eps))
