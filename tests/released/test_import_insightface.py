"""``marginlab import-model --format insightface``: an arcface_torch backbone.pth embeds as arcface_torch's net does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from official_layouts import AdaFaceOfficial, ArcfaceOfficial, flip_fused, official_input, randomise, save_adaface_ckpt
from official_layouts import write_faces

from marginlab.backbones import build_backbone, count_parameters
from marginlab.backbones.iresnet_insightface import INSIGHTFACE_UNITS
from marginlab.core.cli import main
from marginlab.models import read_model_file


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_faces(tmp_path_factory.mktemp("faces"), n=3, seed=5)


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("r18")
    net = randomise(ArcfaceOfficial("r18"), seed=3)
    torch.save(net.state_dict(), tmp / "backbone.pth")
    return net, tmp / "backbone.pth"


@pytest.mark.parametrize("arch", ["r18", "r34"])
def test_embed_gives_arcface_torchs_norms_and_embeddings(arch, faces, tmp_path):
    net = randomise(ArcfaceOfficial(arch), seed=7)
    pth = tmp_path / "backbone.pth"
    torch.save(net.state_dict(), pth)
    out = tmp_path / "model"
    assert main(["import-model", str(pth), "--format", "insightface", "--out", str(out)]) == 0
    assert main(["embed", "--model", str(out), *map(str, faces), "--out", str(tmp_path / "e.parquet"), "--device", "cpu"]) == 0
    frame = pd.read_parquet(tmp_path / "e.parquet")
    ref = np.concatenate([flip_fused(net, official_input(p, "RGB"), returns_norm=False) for p in faces])
    ref_norm = np.linalg.norm(ref, axis=1)
    np.testing.assert_allclose(frame["norm"].to_numpy(), ref_norm, rtol=1e-4)
    np.testing.assert_allclose(np.stack(frame["embedding"].to_list()), ref / ref_norm[:, None], rtol=0, atol=1e-4)
    payload = read_model_file(out / "model.pt")
    assert payload["channel_order"] == "RGB" and payload["architecture"]["backbone"] == f"insightface_{arch}"
    assert payload["imported"]["official_arch"] == arch and payload["head"] is None


def test_a_ddp_prefix_and_a_training_checkpoint_are_read(r18, tmp_path):
    net, _pth = r18
    state = net.state_dict()
    ddp = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, ddp)
    assert main(["import-model", str(ddp), "--format", "insightface", "--arch", "r18", "--out", str(tmp_path / "a")]) == 0
    gpu0 = tmp_path / "checkpoint_gpu_0.pt"
    torch.save({"epoch": 3, "global_step": 10, "state_dict_backbone": state, "state_dict_softmax_fc": {}}, gpu0)
    assert main(["import-model", str(gpu0), "--format", "insightface", "--out", str(tmp_path / "b")]) == 0
    a, b = (read_model_file(tmp_path / d / "model.pt")["backbone"] for d in "ab")
    assert all(torch.equal(a[k], state[k]) and torch.equal(b[k], state[k]) for k in state)


def test_wrong_arch_missing_key_and_wrong_shape_are_named(r18, tmp_path, capsys):
    net, pth = r18
    assert main(["import-model", str(pth), "--format", "insightface", "--arch", "r34", "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert str(pth) in err and "--arch r34" in err and "layer1..4.N keys give [2, 2, 2, 2] (r18)" in err
    state = net.state_dict()
    del state["layer1.0.downsample.1.running_mean"]
    state["fc.bias"] = torch.zeros(7)
    bad = tmp_path / "bad.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, bad)
    assert main(["import-model", str(bad), "--format", "insightface", "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert str(bad) in err and "module.layer1.0.downsample.1.running_mean is missing" in err
    assert "module.fc.bias has shape (7,), the architecture expects (512,)" in err
    assert not (tmp_path / "o").exists()


def test_an_adaface_checkpoint_is_refused_with_a_pointer(tmp_path, capsys):
    ckpt = save_adaface_ckpt(tmp_path / "ada.ckpt", AdaFaceOfficial("ir_18"))
    assert main(["import-model", str(ckpt), "--format", "insightface", "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert str(ckpt) in err and "--format adaface" in err


@pytest.mark.parametrize("arch, units", [("r100", [3, 13, 30, 3]), ("r200", [6, 26, 60, 6])])
def test_deep_nets_are_recognised_from_their_keys(arch, units, tmp_path, capsys):
    """The unit counts are read off the layerK.N keys (tiny stand-in tensors; the shapes are not reached)."""
    state = {"conv1.weight": torch.zeros(1)}
    for k, n in enumerate(units, start=1):
        state.update({f"layer{k}.{i}.conv1.weight": torch.zeros(1) for i in range(n)})
    pth = tmp_path / "keys.pth"
    torch.save(state, pth)
    assert main(["import-model", str(pth), "--format", "insightface", "--arch", "r50", "--out", str(tmp_path / "o")]) == 2
    assert f"give {units} ({arch})" in _error(capsys)


def test_the_insightface_net_differs_from_adafaces_where_arcface_torch_does():
    """layer1's first unit has a conv1x1+BN downsample, the features BN has a bias and a weight fixed at 1; r50
    has arcface_torch's 43,590,848 parameters (AdaFace's IR-50: 43,585,600)."""
    net = build_backbone("insightface_r50")
    assert count_parameters(net) == 43_590_848
    assert net.layer1[0].downsample is not None and net.layer1[1].downsample is None
    assert net.features.affine and not net.features.weight.requires_grad
    assert all(m.eps == 1e-5 for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    assert tuple(INSIGHTFACE_UNITS["insightface_r200"]) == (6, 26, 60, 6)
    assert set(net.state_dict()) == set(ArcfaceOfficial("r50").state_dict())
