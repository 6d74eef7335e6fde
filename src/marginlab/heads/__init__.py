"""Margin heads: class centres + margin-adjusted, scaled logits for softmax cross-entropy.

``build_head(name, embedding_size, num_classes, **hyperparameters)`` builds one of

==============  =====================================  ========================================
name            target logit (non-targets s · cos θ_j)   hyperparameters (defaults = paper values)
==============  =====================================  ========================================
normface        s · cos θ_y                              s=64
cosface         s · (cos θ_y - m)                        s=64, m=0.4
arcface         s · cos(θ_y + m)  (clip convention)      s=64, m=0.5
curricularface  s · cos(θ_y + m), hard negatives         s=64, m=0.5
                modulated by t (running buffer)
magface         s · cos(θ_y + m(||z||)) + regulariser    s=64, l_a=10, u_a=110, l_m=0.45, u_m=0.8,
                                                         lambda_g=35
adaface         s · (cos(θ_y - m·ẑ) - m·ẑ - m),          s=64, m=0.4, h=0.333, t_alpha=0.01
                ẑ from the batch-normalised norm
==============  =====================================  ========================================

Every head: ``head.weight`` (C, D) Parameter; ``head(embeddings, labels, quality=None) -> (B, C)``;
``head.regularizer(embeddings)`` (MagFace λ_g·mean g(a), else 0); ``head.state_summary()``;
``head.logits_from_cosines(cos, labels, norms=..., quality=...)`` (same margin code, used by the
gradient-scaling-term analysis). Formulas and the exact constants: ``reference/heads.md`` and each
module's docstring.
"""

from __future__ import annotations

import inspect

from marginlab.heads.adaface import AdaFace
from marginlab.heads.arcface import ArcFace
from marginlab.heads.base import MarginHead
from marginlab.heads.cosface import CosFace
from marginlab.heads.curricularface import CurricularFace
from marginlab.heads.magface import MagFace, magface_lambda_bound
from marginlab.heads.normface import NormFace

HEADS: dict[str, type[MarginHead]] = {
    "normface": NormFace,
    "cosface": CosFace,
    "arcface": ArcFace,
    "curricularface": CurricularFace,
    "magface": MagFace,
    "adaface": AdaFace,
}
HEAD_NAMES = tuple(HEADS)

__all__ = [
    "HEADS", "HEAD_NAMES", "MarginHead", "NormFace", "CosFace", "ArcFace", "CurricularFace", "MagFace",
    "AdaFace", "build_head", "head_defaults", "magface_lambda_bound",
]


def head_defaults(name: str) -> dict[str, float]:
    """The hyperparameters ``name`` accepts, with their (paper) default values."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; allowed: {', '.join(HEAD_NAMES)}")
    sig = inspect.signature(HEADS[name].__init__)
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def build_head(name: str, embedding_size: int, num_classes: int, **hyperparameters: float) -> MarginHead:
    """Build margin head ``name`` for ``num_classes`` classes of ``embedding_size``-d embeddings.

    Unknown names or hyperparameters raise ``ValueError`` listing what is allowed; out-of-range values
    raise ``ValueError`` naming the hyperparameter and its range.
    """
    defaults = head_defaults(name)
    unknown = sorted(set(hyperparameters) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {unknown} for head {name!r}; allowed: {', '.join(sorted(defaults))}"
        )
    return HEADS[name](embedding_size, num_classes, **hyperparameters)
