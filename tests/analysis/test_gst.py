"""Gradient scaling term by autograd through the heads vs closed forms written out independently."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from marginlab.analysis.gst import (
    DEFAULT_VARIANTS, GST_COLUMNS, gst_curves, gst_grid, gst_map, gst_table, target_gst, variant_label,
)
from marginlab.heads import HEAD_NAMES, build_head

S = 64.0
GRID = np.linspace(-0.98, 0.98, 25)
X, J = np.meshgrid(GRID, GRID, indexing="ij")


def two_class_gst(target_logit: np.ndarray, d_target: np.ndarray, nontarget_logit: np.ndarray) -> np.ndarray:
    """(P - 1) · ∂f/∂x with P = softmax over the two logits (numerically stable form)."""
    p = 1.0 / (1.0 + np.exp(nontarget_logit - target_logit))
    return (p - 1.0) * d_target


def cosface_closed(x, j, m=0.4, s=S):
    # issue #24: x_m = x - m; P = exp(s·x_m) / (exp(s·x_m) + exp(s·j)); g = (P - 1)·s
    return two_class_gst(s * (x - m), np.full_like(x, s), s * j)


def arcface_closed(x, j, m=0.5, s=S):
    th = np.arccos(x)
    return two_class_gst(s * np.cos(th + m), s * np.sin(th + m) / np.sin(th), s * j)


def test_cosface_matches_closed_form():
    g = target_gst("cosface", X, J)
    assert g.shape == X.shape
    np.testing.assert_allclose(g, cosface_closed(X, J), rtol=0, atol=1e-5)
    assert np.abs(g).max() > 1.0  # the grid covers the non-trivial region


@pytest.mark.parametrize("m", [0.5, 0.3])
def test_arcface_matches_closed_form_and_is_zero_past_pi(m):
    g = target_gst("arcface", X, J, hyperparameters={"m": m})
    inside = np.arccos(X) + m < math.pi - 1e-4
    assert inside.sum() > 100 and (~inside).sum() > 0
    np.testing.assert_allclose(g[inside], arcface_closed(X, J, m=m)[inside], rtol=0, atol=1e-5)
    assert np.all(g[~inside] == 0.0)  # clip convention: no gradient past θ + m = π


def test_normface_is_sigmoid_gst():
    g = target_gst("normface", X, J, hyperparameters={"s": 10.0})
    np.testing.assert_allclose(g, two_class_gst(10.0 * X, np.full_like(X, 10.0), 10.0 * J), atol=1e-9)


def test_adaface_special_cases():
    np.testing.assert_allclose(target_gst("adaface", X, J, {"z_hat": 0.0}), cosface_closed(X, J, m=0.4), atol=1e-5)
    inside = np.arccos(X) + 0.4 < math.pi - 1e-3
    g_arc = target_gst("adaface", X, J, {"z_hat": -1.0})
    np.testing.assert_allclose(g_arc[inside], arcface_closed(X, J, m=0.4)[inside], atol=1e-5)
    # ẑ = +1: f = s·(cos(θ - m) - 2m), f' = s·sin(θ - m)/sin θ where θ > m (+eps), 0 where θ' is clipped
    th = np.arccos(X)
    g_plus = target_gst("adaface", X, J, {"z_hat": 1.0})
    ok = th > 0.4 + 1e-3
    ref = two_class_gst(S * (np.cos(th - 0.4) - 0.8), S * np.sin(th - 0.4) / np.sin(th), S * J)
    np.testing.assert_allclose(g_plus[ok], ref[ok], atol=1e-5)
    assert np.all(g_plus[~ok] == 0.0) and (~ok).sum() > 0


def test_adaface_norm_variant_equals_its_z_hat():
    mu, sigma, h, norm = 20.0, 10.0, 0.333, 35.0
    z_hat = h * (norm - mu) / (sigma + 1e-3)
    a = target_gst("adaface", X, J, {"norm": norm, "mu": mu, "sigma": sigma})
    b = target_gst("adaface", X, J, {"z_hat": z_hat})
    np.testing.assert_allclose(a, b, atol=1e-9)
    # without mu/sigma the head's initial statistics (20, 100) are used
    c = target_gst("adaface", X, J, {"norm": norm})
    np.testing.assert_allclose(c, target_gst("adaface", X, J, {"z_hat": h * (norm - 20.0) / 100.001}), atol=1e-9)


def test_magface_is_arcface_with_norm_margin():
    for a in (10.0, 60.0, 110.0, 200.0):
        m = 0.45 + 0.35 / 100.0 * (min(a, 110.0) - 10.0)
        g = target_gst("magface", X, J, {"norm": a})
        pos = X > 0
        np.testing.assert_allclose(g[pos], arcface_closed(X, J, m=m)[pos], atol=1e-5)
        # easy margin: cos θ_y ≤ 0 keeps the plain cosine
        np.testing.assert_allclose(g[~pos], two_class_gst(S * X, np.full_like(X, S), S * J)[~pos], atol=1e-5)


def test_curricularface_with_modulated_hard_negative():
    t, m = 0.4, 0.5
    g = target_gst("curricularface", X, J, {"t": t})
    th = np.arccos(X)
    regular = X > math.cos(math.pi - m)
    cos_m = np.cos(th + m)
    hard = J > cos_m
    nontarget = np.where(hard, S * J * (t + J), S * J)  # j·(t + j) for hard negatives
    target = np.where(regular, S * cos_m, S * (X - math.sin(math.pi - m) * m))
    d_target = np.where(regular, S * np.sin(th + m) / np.sin(th), S)
    np.testing.assert_allclose(g, two_class_gst(target, d_target, nontarget), atol=1e-5)
    assert hard.any() and (~hard).any() and (~regular).any()


def test_built_head_state_is_used_and_left_alone():
    head = build_head("curricularface", 8, 5)
    head.t.fill_(0.4)
    np.testing.assert_allclose(target_gst(head, X, J), target_gst("curricularface", X, J, {"t": 0.4}), atol=1e-6)
    assert head.weight.shape == (5, 8) and float(head.t) == pytest.approx(0.4)
    ada = build_head("adaface", 8, 5, m=0.6)
    ada.batch_mean.fill_(25.0)
    ada.batch_std.fill_(5.0)
    g = target_gst(ada, X, J, {"norm": 30.0, "mu": 25.0, "sigma": 5.0})
    np.testing.assert_allclose(g, target_gst("adaface", X, J, {"z_hat": 0.333 * 5 / 5.001}, hyperparameters={"m": 0.6}),
                               atol=1e-9)
    assert float(ada.batch_mean) == 25.0 and ada.training


def test_adaface_emphasis_follows_norm():
    """Paper claim (Fig. 3, issue #24): high norm → more weight on harder samples, low norm → less."""
    x = np.array([-0.2, 0.0, 0.3])  # harder → easier, non-target cosine 0.5
    low = np.abs(target_gst("adaface", x, 0.5, {"z_hat": -1.0}))
    high = np.abs(target_gst("adaface", x, 0.5, {"z_hat": 1.0}))
    assert np.all(np.diff(low) > 0)  # ẑ = -1: |g| grows as the sample gets easier
    assert np.all(np.diff(high) < 0)  # ẑ = +1: |g| grows as the sample gets harder
    assert high[0] > low[0] and high[-1] < low[-1]


def test_tables_are_tidy():
    frame = gst_grid("adaface", GRID[:5], GRID[:3])
    assert tuple(frame.columns) == GST_COLUMNS
    assert len(frame) == 5 * 3 * len(DEFAULT_VARIANTS["adaface"])
    assert sorted(frame["variant"].unique()) == ["z_hat=-1", "z_hat=0", "z_hat=1"]
    table = gst_table(n=7)
    assert set(table["head"]) == set(HEAD_NAMES)
    assert len(table) == 7 * 7 * sum(len(v) for v in DEFAULT_VARIANTS.values())
    assert table["gst"].notna().all() and (table["gst"] <= 0).all()  # target GST is (P - 1)·f' ≤ 0
    curves = gst_curves(["cosface", "magface"], n=11, variants={"magface": [{"norm": 50.0}]})
    assert set(curves["cos_nontarget"]) == {0.5} and len(curves) == 11 * 2
    pivot = gst_map(table, "adaface", "z_hat=1")
    assert pivot.shape == (7, 7) and isinstance(pivot, pd.DataFrame)
    assert variant_label({}) == "default" and variant_label({"norm": 60.0, "mu": 20}) == "norm=60,mu=20"


def test_errors():
    with pytest.raises(ValueError, match="do not apply to head 'arcface'"):
        target_gst("arcface", 0.1, 0.2, {"t": 0.1})
    with pytest.raises(ValueError, match="needs a norm level"):
        target_gst("magface", 0.1, 0.2)
    with pytest.raises(ValueError, match=r"cosines must lie in \[-1, 1\]"):
        target_gst("cosface", 1.5, 0.2)
    with pytest.raises(ValueError, match="unknown head"):
        gst_grid("sphereface", [0.1], [0.2])
    with pytest.raises(ValueError, match="not both"):
        target_gst("adaface", 0.1, 0.2, {"z_hat": 0.5, "norm": 3.0})
    with pytest.raises(ValueError, match="outside"):
        target_gst("adaface", 0.1, 0.2, {"z_hat": 1.5})
    with pytest.raises(ValueError, match="no GST rows"):
        gst_map(gst_grid("cosface", [0.1], [0.2]), "cosface", "z_hat=1")
