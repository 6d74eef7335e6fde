"""Gradient scaling term (GST) of the margin heads on the paper's two-class toy (Fig. 3, issue #24).

For softmax cross-entropy over logits f(cos θ_j) the derivative of the loss with respect to the cosine of
class j is

    g_j = ∂L / ∂cos θ_j = (P_j - 1(y = j)) · ∂f(cos θ_j) / ∂cos θ_j,

the "gradient scaling term": how strongly a sample pulls on its class centre. The paper plots |g_y| of the
target class for two classes, varying the target cosine x = cos θ_y and the non-target cosine
j = cos θ_j over a grid. For CosFace (author's description in issue #24):
x_m = x - m, P = exp(s·x_m) / (exp(s·x_m) + exp(s·j)), g = (P - 1) · s; for ArcFace
g = (P - 1) · s · sin(θ + m) / sin θ with P from s·cos(θ + m) against s·j.

Here g is not re-derived per head: it is taken by autograd through the real head code
(:meth:`marginlab.heads.MarginHead.logits_from_cosines`, the same margin code as the training forward),
on a float64 copy of the head in eval mode, with the cosines as the leaf tensor. Heads with running
state are evaluated in a fixed state (a *variant*), which the head itself sets
(:meth:`marginlab.heads.MarginHead.set_analysis_state`; its ``gst_variants`` are the defaults):

- ``adaface``: ``{"z_hat": q}`` (the quality indicator ẑ itself, q in [-1, 1]) or
  ``{"norm": a, "mu": μ, "sigma": σ}`` (a raw norm with given running statistics; μ, σ default to the
  head's initial 20 and 100);
- ``magface``: ``{"norm": a}`` (the feature magnitude; the margin is m(a));
- ``curricularface``: ``{"t": t}`` (the running curriculum parameter);
- heads without running state take no variant (``{}``).

Outputs are tidy :class:`pandas.DataFrame` rows ``head, variant, cos_target, cos_nontarget, gst``
(signed g; the paper plots ``gst.abs()``).

*Hard versus easy emphasis* (the reading of Fig. 3 that claim 2 tests, and the table beside the figure)
is defined once, here: :func:`emphasis` compares |g| at a fixed hard sample (:data:`HARD_POINT`) with
|g| at a fixed easy one (:data:`EASY_POINT`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from marginlab.heads import HEAD_NAMES, HEADS, MarginHead, build_head

__all__ = [
    "GST_COLUMNS", "DEFAULT_VARIANTS", "EASY_POINT", "HARD_POINT", "EMPHASIS_GRID", "SATURATION", "emphasis",
    "emphasis_grid", "target_gst", "gst_grid", "gst_curves",
    "gst_table", "gst_map", "variant_label",
]

GST_COLUMNS = ("head", "variant", "cos_target", "cos_nontarget", "gst")

#: Norm levels shown by default, declared by each head (``gst_variants``): AdaFace at the two ends and the
#: middle of ẑ, MagFace at l_a, the middle and u_a, CurricularFace early (t = 0) and later; {} for the rest.
DEFAULT_VARIANTS: dict[str, tuple[dict[str, float], ...]] = {name: HEADS[name].gst_variants for name in HEAD_NAMES}

#: The easy and the hard sample of the emphasis comparison, as (cos θ_y, cos θ_j) on the two-class toy: at
#: the same non-target cosine, the easy one lies near its class centre (inside the no-margin boundary),
#: the hard one far from it and closer to the other class. Marked ○ and △ on the Fig. 3 maps.
EASY_POINT = (0.5, 0.2)
HARD_POINT = (-0.2, 0.2)

#: Claim 2's pre-stated grid (fixed before looking at the results): every (easy cos θ_y, hard cos θ_y) pair
#: of these 5 × 5 target cosines at each of the 3 non-target cosines — 75 (easy, hard) comparisons. Easy
#: samples lie inside the no-margin boundary (cos θ_y > cos θ_j for every j here), hard ones outside it.
EMPHASIS_GRID = {"easy_cos_target": (0.3, 0.4, 0.5, 0.6, 0.7), "hard_cos_target": (-0.4, -0.3, -0.2, -0.1, 0.0),
                 "cos_nontarget": (0.0, 0.2, 0.4)}
#: A sample whose target softmax leaves less than this to gain (1 - P_y < SATURATION) is *saturated*: its
#: |GST| is then set by how deep it sits in the softmax tail (exp(-s·Δcos) at s = 64), not by the margin form.
SATURATION = 0.01


def variant_label(variant: Mapping[str, float]) -> str:
    """``{"z_hat": -1.0}`` → ``"z_hat=-1"``; ``{}`` → ``"default"``."""
    if not variant:
        return "default"
    return ",".join(f"{k}={float(v):g}" for k, v in variant.items())


def _toy_head(head: MarginHead | str, hyperparameters: Optional[Mapping[str, float]]) -> MarginHead:
    """A float64, eval-mode, two-class copy of ``head`` (a name or an existing head)."""
    if isinstance(head, str):
        toy = build_head(head, 2, 2, **dict(hyperparameters or {}))
    else:
        if hyperparameters:
            raise ValueError("pass hyperparameters only with a head name, not with a built head")
        toy = build_head(head.name, 2, 2, **head.hyperparameters)
        # Carry the running state (AdaFace μ/σ, CurricularFace t) of the given head.
        buffers = {k: v for k, v in head.state_dict().items() if k != "weight"}
        toy.load_state_dict({**buffers, "weight": toy.weight.detach()}, strict=True)
    return toy.double().eval()


def target_gst(
    head: MarginHead | str,
    cos_target: np.ndarray | Sequence[float] | float,
    cos_nontarget: np.ndarray | Sequence[float] | float,
    variant: Optional[Mapping[str, float]] = None,
    *,
    hyperparameters: Optional[Mapping[str, float]] = None,
) -> np.ndarray:
    """g_y = ∂CE/∂cos θ_y of the target class on the two-class toy, by autograd (float64).

    ``cos_target`` and ``cos_nontarget`` broadcast against each other; the result has their broadcast
    shape. ``head`` is a head name (built with ``hyperparameters``) or a built head (its
    hyperparameters and running state are copied; the head itself is not modified).
    """
    return _gst_and_p(head, cos_target, cos_nontarget, variant, hyperparameters)[0]


def _gst_and_p(head, cos_target, cos_nontarget, variant, hyperparameters) -> tuple[np.ndarray, np.ndarray]:
    """(g_y, P_y): the target GST and the target's softmax probability of each two-class toy sample."""
    x, j = np.broadcast_arrays(np.asarray(cos_target, dtype=np.float64), np.asarray(cos_nontarget, dtype=np.float64))
    if np.any(np.abs(x) > 1) or np.any(np.abs(j) > 1):
        raise ValueError("cosines must lie in [-1, 1]")
    shape = x.shape
    toy = _toy_head(head, hyperparameters)
    n = int(np.prod(shape)) if shape else 1
    norms = toy.set_analysis_state(dict(variant or {}), n)
    cos = torch.from_numpy(np.stack([x.reshape(-1), j.reshape(-1)], axis=1)).requires_grad_(True)
    labels = torch.zeros(n, dtype=torch.int64)
    logits = toy.logits_from_cosines(cos, labels, norms=norms)
    loss = F.cross_entropy(logits, labels, reduction="sum")  # rows are independent samples
    (grad,) = torch.autograd.grad(loss, cos)
    p_target = torch.softmax(logits.detach(), dim=1)[:, 0]
    return grad[:, 0].numpy().reshape(shape), p_target.numpy().reshape(shape)


def gst_grid(
    head: MarginHead | str,
    cos_target: np.ndarray | Sequence[float],
    cos_nontarget: np.ndarray | Sequence[float],
    variants: Optional[Iterable[Mapping[str, float]]] = None,
    *,
    hyperparameters: Optional[Mapping[str, float]] = None,
) -> pd.DataFrame:
    """GST on the full grid cos_target × cos_nontarget for each variant (default: ``DEFAULT_VARIANTS``)."""
    name = head if isinstance(head, str) else head.name
    if name not in HEAD_NAMES:
        raise ValueError(f"unknown head {name!r}; allowed: {', '.join(HEAD_NAMES)}")
    xs = np.asarray(cos_target, dtype=np.float64).reshape(-1)
    js = np.asarray(cos_nontarget, dtype=np.float64).reshape(-1)
    gx, gj = np.meshgrid(xs, js, indexing="ij")
    frames = []
    for variant in DEFAULT_VARIANTS[name] if variants is None else variants:
        g = target_gst(head, gx, gj, variant, hyperparameters=hyperparameters)
        frames.append(pd.DataFrame({
            "head": name, "variant": variant_label(variant),
            "cos_target": gx.reshape(-1), "cos_nontarget": gj.reshape(-1), "gst": g.reshape(-1),
        }))
    return pd.concat(frames, ignore_index=True)[list(GST_COLUMNS)]


def gst_table(
    heads: Iterable[str] = HEAD_NAMES,
    *,
    n: int = 101,
    limit: float = 0.999,
    hyperparameters: Optional[Mapping[str, Mapping[str, float]]] = None,
    variants: Optional[Mapping[str, Iterable[Mapping[str, float]]]] = None,
) -> pd.DataFrame:
    """Fig. 3-style maps for several heads: an n × n grid of both cosines over [-limit, limit].

    ``hyperparameters`` / ``variants`` are per-head overrides (missing heads use defaults).
    """
    grid = np.linspace(-limit, limit, n)
    hyperparameters = dict(hyperparameters or {})
    variants = dict(variants or {})
    unknown = (set(hyperparameters) | set(variants)) - set(HEAD_NAMES)
    if unknown:
        raise ValueError(f"unknown head(s) {sorted(unknown)}; allowed: {', '.join(HEAD_NAMES)}")
    return pd.concat(
        [gst_grid(h, grid, grid, variants.get(h), hyperparameters=hyperparameters.get(h)) for h in heads],
        ignore_index=True,
    )


def gst_curves(
    heads: Iterable[str] = HEAD_NAMES,
    *,
    cos_nontarget: float = 0.5,
    n: int = 401,
    limit: float = 0.999,
    hyperparameters: Optional[Mapping[str, Mapping[str, float]]] = None,
    variants: Optional[Mapping[str, Iterable[Mapping[str, float]]]] = None,
) -> pd.DataFrame:
    """GST against the target cosine at one fixed non-target cosine (default 0.5, as in issue #24)."""
    grid = np.linspace(-limit, limit, n)
    hyperparameters = dict(hyperparameters or {})
    variants = dict(variants or {})
    return pd.concat(
        [gst_grid(h, grid, [cos_nontarget], variants.get(h), hyperparameters=hyperparameters.get(h)) for h in heads],
        ignore_index=True,
    )


def gst_map(frame: pd.DataFrame, head: str, variant: str = "default") -> pd.DataFrame:
    """One head/variant of a GST table as a 2-D table (rows cos_target, columns cos_nontarget) for plotting."""
    rows = frame[(frame["head"] == head) & (frame["variant"] == variant)]
    if rows.empty:
        have = sorted(set(zip(frame["head"], frame["variant"])))
        raise ValueError(f"no GST rows for head={head!r}, variant={variant!r}; available: {have}")
    return rows.pivot(index="cos_target", columns="cos_nontarget", values="gst")


def emphasis(
    head: MarginHead | str,
    variant: Optional[Mapping[str, float]] = None,
    *,
    hyperparameters: Optional[Mapping[str, float]] = None,
) -> dict[str, float | None]:
    """How much more the hard sample pulls than the easy one: |g| at :data:`HARD_POINT` over |g| at :data:`EASY_POINT`.

    Returns ``{"easy_abs_gst", "hard_abs_gst", "hard_over_easy"}`` (the ratio is None when the easy |g| is 0).
    A ratio above 1 means the head emphasises the hard sample. The paper's reading of Fig. 3: AdaFace has
    a ratio above 1 at high norm (ẑ = +1) and below 1 at low norm (ẑ = -1). ``head``, ``variant`` and
    ``hyperparameters`` as in :func:`target_gst`.
    """
    g = np.abs(target_gst(head, [EASY_POINT[0], HARD_POINT[0]], [EASY_POINT[1], HARD_POINT[1]], variant,
                          hyperparameters=hyperparameters))
    easy, hard = float(g[0]), float(g[1])
    return {"easy_abs_gst": easy, "hard_abs_gst": hard, "hard_over_easy": hard / easy if easy > 0 else None}


def emphasis_grid(
    head: MarginHead | str,
    variants: Sequence[Mapping[str, float]],
    *,
    hyperparameters: Optional[Mapping[str, float]] = None,
    grid: Optional[Mapping[str, Sequence[float]]] = None,
) -> pd.DataFrame:
    """:func:`emphasis` over a grid of (easy, hard, cos θ_j) points (default :data:`EMPHASIS_GRID`), per variant.

    One row per (easy cos θ_y, hard cos θ_y, cos θ_j): per variant ``label`` (:func:`variant_label`) the
    columns ``R[label]`` (|g hard| / |g easy|, NaN when |g easy| = 0) and ``saturated[label]`` (either
    sample has 1 - P_y < :data:`SATURATION`). Two autograd passes per variant through the head code.
    """
    grid = dict(EMPHASIS_GRID if grid is None else grid)
    e, h, j = np.meshgrid(np.asarray(grid["easy_cos_target"], float), np.asarray(grid["hard_cos_target"], float),
                          np.asarray(grid["cos_nontarget"], float), indexing="ij")
    out = pd.DataFrame({"easy_cos_target": e.ravel(), "hard_cos_target": h.ravel(), "cos_nontarget": j.ravel()})
    for variant in variants:
        g, p = _gst_and_p(head, np.concatenate([e.ravel(), h.ravel()]), np.concatenate([j.ravel(), j.ravel()]),
                          variant, hyperparameters)
        g, n = np.abs(g), e.size
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"R[{variant_label(variant)}]"] = np.where(g[:n] > 0, g[n:] / g[:n], np.nan)
        out[f"saturated[{variant_label(variant)}]"] = ((1.0 - p[:n]) < SATURATION) | ((1.0 - p[n:]) < SATURATION)
    return out
