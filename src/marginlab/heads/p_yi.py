"""Quality proxies computed from the head itself (paper Table 1 ablation).

``p_yi_quality(head, embeddings, labels)``: P_yi, the softmax probability of the target class under the
**plain** logits s · cos θ_j (no margin, s = the head's scale), computed under no-grad:

    P_yi = exp(s · cos θ_y) / Σ_j exp(s · cos θ_j)      ∈ [0, 1]

It is handed to AdaFace as ``quality`` unchanged (no further normalisation here); AdaFace standardises it
with its running batch statistics, h and the clip, initialising those statistics from the first batch
(see :mod:`marginlab.heads.adaface`). P_yi measures how easy a sample is for the current classifier, not
image quality — which is the point of the ablation.
"""

from __future__ import annotations

import torch

from marginlab.heads.base import MarginHead


@torch.no_grad()
def p_yi_quality(head: MarginHead, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Detached (B,) float32 target-class probability under the plain scaled cosine logits of ``head``."""
    if not hasattr(head, "weight") or not hasattr(head, "s"):
        raise ValueError(f"p_yi_quality needs a margin head with .weight and .s, got {type(head).__name__}")
    if embeddings.dim() != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(
            f"p_yi_quality: expected embeddings (B, D) and labels (B,), got {tuple(embeddings.shape)} and "
            f"{tuple(labels.shape)}"
        )
    logits = head.s * head.cosine(embeddings).float()
    log_p = logits.gather(1, labels.long().unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=1)
    return log_p.exp()
