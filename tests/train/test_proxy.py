"""The quality proxies: each declared one computes on a toy batch, BRISQUE's IQ table, a new proxy plugs in."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from marginlab.core.config import ConfigError, validate_params
from marginlab.heads import build_head
from marginlab.heads.p_yi import p_yi_quality
from marginlab.core.proxy_specs import PROXY_SPECS, ProxySpec
from marginlab.train.proxy import PROXIES, ProxyError, QualityProxy, build_proxy, load_iq_table, register_proxy


def _scores(tmp_path, rows):
    path = tmp_path / "scores.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def _batch(n=6, dim=8, classes=5):
    torch.manual_seed(0)
    return build_head("adaface", dim, classes), torch.randn(n, dim), torch.randint(0, classes, (n,)), torch.arange(n)


def test_every_declaration_has_its_proxy_and_back():
    assert PROXIES.names() == PROXY_SPECS.names() == ("norm", "brisque", "p_yi")


@pytest.mark.parametrize("name", PROXY_SPECS.names())
def test_every_declared_proxy_computes_on_a_toy_batch(name, tmp_path):
    head, z, y, idx = _batch()
    iq = np.linspace(0.1, 0.6, len(idx))
    path = _scores(tmp_path, {"split": "train", "index": idx.numpy(), "iq": iq})
    proxy = build_proxy(name, scores_path=path, num_images=len(idx))
    assert proxy.name == name
    q = proxy(head, z, y, idx)
    expected = {"norm": None, "brisque": torch.as_tensor(iq, dtype=torch.float32), "p_yi": p_yi_quality(head, z, y)}[name]
    if expected is None:
        assert q is None  # the head reads ||z|| itself
    else:
        torch.testing.assert_close(q, expected)
    params = validate_params({"runs": {"r": {"head": "adaface", "proxy": name}}})
    assert params.run("r").proxy == name


def test_an_unknown_proxy_lists_the_declared_ones():
    pattern = re.escape("unknown quality proxy 'entropy'; allowed: norm, brisque, p_yi")
    with pytest.raises(ProxyError, match=pattern):
        build_proxy("entropy")
    with pytest.raises(ConfigError, match=pattern):
        validate_params({"runs": {"r": {"head": "adaface", "proxy": "entropy"}}})


def test_a_proxy_without_a_declaration_is_refused():
    class Entropy(QualityProxy):
        name = "entropy"

    with pytest.raises(ValueError, match="has no declaration: add a ProxySpec"):
        register_proxy(Entropy)
    assert "entropy" not in PROXIES


@pytest.fixture
def half_proxy():
    """``half`` declared and registered for one test, as a new proxy would be."""
    PROXY_SPECS.add("half", ProxySpec("half", probe_signal="norm"))
    try:
        @register_proxy
        class Half(QualityProxy):
            name = "half"

            def __call__(self, head, embeddings, labels, indices):
                return torch.full((len(embeddings),), 0.5)

        yield Half
    finally:
        if "half" in PROXIES:
            PROXIES.remove("half")
        PROXY_SPECS.remove("half")


def test_a_new_proxy_is_usable_through_the_schema_and_the_build_path(half_proxy):
    params = validate_params({"runs": {"r": {"head": "adaface", "proxy": "half"}}})
    proxy = build_proxy(params.run("r").proxy)
    assert isinstance(proxy, half_proxy)
    head, z, y, idx = _batch()
    assert proxy(head, z, y, idx).tolist() == [0.5] * len(z)
    with pytest.raises(ConfigError, match="only applies to head 'adaface'"):
        validate_params({"runs": {"r": {"head": "cosface", "proxy": "half"}}})


def test_brisque_proxy_looks_up_iq_by_reader_index(tmp_path):
    path = _scores(tmp_path, {
        "split": ["train", "bin:lfw", "train", "train", "train"],
        "index": [2, 0, 0, 3, 1],
        "brisque": [30.0, 99.0, 10.0, 50.0, 80.0],
        "iq": [0.7, 0.01, 0.9, 0.5, 0.2],
    })
    table = load_iq_table(path, 4)
    np.testing.assert_allclose(table, [0.9, 0.2, 0.7, 0.5], rtol=1e-6)  # bin rows ignored
    proxy = build_proxy("brisque", scores_path=path, num_images=4)
    q = proxy(None, torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), torch.tensor([3, 0, 3]))
    np.testing.assert_allclose(q.numpy(), [0.5, 0.9, 0.5], rtol=1e-6)
    assert build_proxy("norm")(None, torch.zeros(2, 2), torch.zeros(2), torch.zeros(2)) is None


def test_brisque_proxy_errors(tmp_path):
    with pytest.raises(ProxyError, match="needs scores_path"):
        build_proxy("brisque")
    with pytest.raises(ProxyError, match="not found"):
        build_proxy("brisque", scores_path=tmp_path / "missing.parquet", num_images=3)
    path = _scores(tmp_path, {"split": ["train"], "index": [0], "iq": [0.5]})
    with pytest.raises(ProxyError, match="2 of 3 training images have no finite 'iq'"):
        build_proxy("brisque", scores_path=path, num_images=3)
    assert build_proxy("brisque", scores_path=path, num_images=3, train_indices=np.array([0])).name == "brisque"
    with pytest.raises(ProxyError, match="outside the 1 training images"):
        load_iq_table(_scores(tmp_path, {"split": ["train"], "index": [5], "iq": [0.5]}), 1)
    with pytest.raises(ProxyError, match="lacks columns"):
        load_iq_table(_scores(tmp_path, {"split": ["train"], "index": [0]}), 1)


def test_p_yi_proxy_is_the_heads_definition():
    head, z, y, idx = _batch()
    q = build_proxy("p_yi")(head, z, y, idx)
    torch.testing.assert_close(q, p_yi_quality(head, z, y))
    assert not q.requires_grad and ((q > 0) & (q < 1)).all()
