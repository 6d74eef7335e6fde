"""Model selection on a held-out split of the *training identities* (never a reported test set).

Split: :func:`marginlab.train.input.datasets.train_val_split` — per identity with ``n >= 2`` images,
``max(1, round(f·n))`` images (at most ``n - 1``) are held out at random (seeded); identities with one
image stay entirely in training.

Metric (:func:`centre_accuracy`): closed-set 1:N identification of the held-out images against the
classifier's class centres — ``argmax_j cos(ẑ, ŵ_j) == y`` on clean (un-augmented) images with the
backbone in eval mode. It asks the question the training identities can answer (does the embedding
generalise to unseen images of known people?) with no extra pairs to build, and it works for every
head since all of them keep one centre per class. The selected epoch is the first one reaching the
highest accuracy.
"""

from __future__ import annotations

import torch

from marginlab.heads import MarginHead


@torch.no_grad()
def centre_accuracy(embeddings: torch.Tensor, head: MarginHead, labels: torch.Tensor) -> float:
    """Share of rows whose nearest class centre (:meth:`MarginHead.cosine`) is their label."""
    if len(embeddings) == 0:
        raise ValueError("no validation embeddings")
    cos = head.cosine(embeddings.float().to(head.weight.device))
    return float((cos.argmax(dim=1).cpu() == labels.cpu().long()).float().mean())
