"""ElasticFace-Arc, the seventh head: added through one file (heads/elasticface.py) and found by the
registry, the params schema, the gradient-scaling analysis and the tables without editing them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from marginlab.heads import HEAD_NAMES, build_head


def _pair(**hp):
    torch.manual_seed(0)
    elastic = build_head("elasticface", 8, 5, **hp)
    arc = build_head("arcface", 8, 5, s=elastic.s, m=elastic.m)
    arc.load_state_dict(elastic.state_dict())
    z = torch.randn(64, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (64,))
    return elastic.double(), arc.double(), z, y


def test_outside_training_it_is_arcface_with_the_mean_margin():
    elastic, arc, z, y = _pair(m=0.45, sigma=0.1)
    elastic.eval(), arc.eval()
    assert torch.equal(elastic(z, y), arc(z, y))


def test_sigma_zero_trains_as_arcface():
    elastic, arc, z, y = _pair(m=0.5, sigma=0.0)
    assert torch.equal(elastic.train()(z, y), arc.train()(z, y))


def test_training_margin_is_one_normal_draw_per_sample_hand_computed():
    elastic, _, z, y = _pair(s=32.0, m=0.5, sigma=0.05)
    elastic.train()
    torch.manual_seed(7)
    logits = elastic(z, y)
    torch.manual_seed(7)
    margins = torch.normal(0.5, 0.05, size=(64,), dtype=torch.float64).numpy()
    zn = z.numpy() / np.linalg.norm(z.numpy(), axis=1, keepdims=True)
    w = elastic.weight.detach().numpy()
    cos = zn @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    cos_y = cos[np.arange(64), y.numpy()]
    theta = np.arccos(np.clip(cos_y, -1 + 1e-4, 1 - 1e-4))
    expected = 32.0 * np.cos(np.clip(theta + margins, 1e-4, math.pi - 1e-4))
    got = logits[torch.arange(64), y].detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    off = np.ones_like(cos, dtype=bool)
    off[np.arange(64), y.numpy()] = False
    np.testing.assert_allclose(logits.detach().numpy()[off], 32.0 * cos[off], atol=1e-10)


def test_margin_draws_have_the_configured_mean_and_spread():
    head = build_head("elasticface", 4, 3, m=0.5, sigma=0.05).train()
    torch.manual_seed(1)
    draws = head.margins(torch.zeros(200_000, dtype=torch.float64)).numpy()
    assert abs(draws.mean() - 0.5) < 4 * 0.05 / math.sqrt(len(draws))
    assert abs(draws.std() - 0.05) < 0.001
    assert head.eval().margins(torch.zeros(3)) == 0.5


def test_registered_with_paper_defaults_and_ranges_in_the_schema():
    from marginlab.core.config import ConfigError, Params, validate_params

    assert HEAD_NAMES.index("arcface") < HEAD_NAMES.index("elasticface") < HEAD_NAMES.index("curricularface")
    assert Params().heads.elasticface.model_dump() == {"s": 64.0, "m": 0.5, "sigma": 0.05}
    p = validate_params({"runs": {"el-s0": {"head": "elasticface", "head_params": {"sigma": 0.1}}}})
    assert p.run("el-s0").head_params == {"s": 64.0, "m": 0.5, "sigma": 0.1}
    with pytest.raises(ConfigError, match=r"runs\.el-s0\.head_params\.sigma: .*less than or equal to 1"):
        validate_params({"runs": {"el-s0": {"head": "elasticface", "head_params": {"sigma": 2.0}}}})
    with pytest.raises(ConfigError, match=r"runs\.el-s0\.head_params\.h: not a hyperparameter of head 'elasticface'"):
        validate_params({"runs": {"el-s0": {"head": "elasticface", "head_params": {"h": 0.3}}}})


def test_in_the_gst_analysis_equal_to_arcface():
    from marginlab.analysis.gst import gst_table

    table = gst_table(n=9)
    assert "elasticface" in set(table["head"])
    el = table[table["head"] == "elasticface"]["gst"].to_numpy()
    arc = table[table["head"] == "arcface"]["gst"].to_numpy()
    np.testing.assert_allclose(el, arc, atol=1e-12)


def test_in_the_tables_in_registry_order():
    from marginlab.analysis.tables import _sorted

    frame = pd.DataFrame({"label": ["ada", "el", "arc"], "head": ["adaface", "elasticface", "arcface"],
                          "protocol": ["verification/hq"] * 3})
    assert list(_sorted(frame)["head"]) == ["arcface", "elasticface", "adaface"]


def test_trains_a_step():
    head = build_head("elasticface", 8, 4).train()
    z = torch.randn(16, 8, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(head(z, torch.randint(0, 4, (16,))), torch.randint(0, 4, (16,)))
    loss.backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(head.weight.grad).all()
