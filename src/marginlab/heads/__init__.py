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

Each head is declared once in :mod:`marginlab.head_specs` (name, hyperparameters with defaults and
ranges: torch-free, what the config reads) and implemented in one module of this folder whose class is
decorated with :func:`~marginlab.heads.registry.register_head`; the package imports every module. The
table above lists the paper's heads; ``HEAD_NAMES`` lists every declared one (e.g. also ``elasticface``).

Every head: ``head.weight`` (C, D) Parameter; ``head(embeddings, labels, quality=None) -> (B, C)``;
``head.regularizer(embeddings)`` (MagFace λ_g·mean g(a), else 0); ``head.state_summary()``;
``head.logits_from_cosines(cos, labels, norms=..., quality=...)`` (same margin code, used by the
gradient-scaling-term analysis). Formulas and the exact constants: each
module's docstring.
"""

from __future__ import annotations

from marginlab.heads.base import MarginHead
from marginlab.heads.registry import HEADS, build_head, discover, head_class, head_defaults, head_names

discover()  # import every head module of this folder: each registers itself

from marginlab.heads.adaface import AdaFace  # noqa: E402 - re-exported for callers that need the class
from marginlab.heads.arcface import ArcFace  # noqa: E402
from marginlab.heads.cosface import CosFace  # noqa: E402
from marginlab.heads.curricularface import CurricularFace  # noqa: E402
from marginlab.head_specs import magface_lambda_bound  # noqa: E402
from marginlab.heads.magface import MagFace  # noqa: E402
from marginlab.heads.normface import NormFace  # noqa: E402

#: Declared head names in table order.
HEAD_NAMES = head_names()

__all__ = [
    "HEADS", "HEAD_NAMES", "MarginHead", "NormFace", "CosFace", "ArcFace", "CurricularFace", "MagFace",
    "AdaFace", "build_head", "head_class", "head_defaults", "head_names", "magface_lambda_bound",
]
