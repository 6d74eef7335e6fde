"""``marginlab import-model --format adaface``: an official-layout AdaFace checkpoint embeds as the official net does."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from official_layouts import AdaFaceOfficial, ArcfaceOfficial, flip_fused, official_input, randomise, save_adaface_ckpt
from official_layouts import write_faces

from marginlab.backbones.iresnet import IR_UNITS
from marginlab.core.cli import main
from marginlab.models import read_model_file
from marginlab.released.adaface_ckpt import OFFICIAL_ARCHS
from marginlab.released.embedder import load_embedder


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def ir18(tmp_path_factory):
    """An official IR-18 with random weights and BatchNorm statistics, its .ckpt, and four PNG faces."""
    tmp = tmp_path_factory.mktemp("adaface")
    net = randomise(AdaFaceOfficial("ir_18"), seed=1)
    ckpt = save_adaface_ckpt(tmp / "adaface_ir18_toy.ckpt", net)
    return net, ckpt, write_faces(tmp, n=4), tmp


@pytest.fixture(scope="module")
def imported(ir18):
    net, ckpt, faces, tmp = ir18
    out = tmp / "imported_ir18"
    assert main(["import-model", str(ckpt), "--format", "adaface", "--out", str(out)]) == 0  # arch read off the keys
    return out


def test_embed_gives_the_official_norms_and_embeddings(ir18, imported, tmp_path):
    net, _ckpt, faces, _tmp = ir18
    out = tmp_path / "emb.parquet"
    assert main(["embed", "--model", str(imported), *map(str, faces), "--out", str(out), "--device", "cpu"]) == 0
    frame = pd.read_parquet(out)
    ref = np.concatenate([flip_fused(net, official_input(p, "BGR"), returns_norm=True) for p in faces])
    ref_norm = np.linalg.norm(ref, axis=1)
    np.testing.assert_allclose(frame["norm"].to_numpy(), ref_norm, rtol=1e-4)
    got = np.stack(frame["embedding"].to_list())
    np.testing.assert_allclose(got, ref / ref_norm[:, None], rtol=0, atol=1e-4)
    # the comparison can tell a wrong convention apart: RGB input gives other features
    rgb = np.concatenate([flip_fused(net, official_input(p, "RGB"), returns_norm=True) for p in faces])
    assert np.abs(rgb / np.linalg.norm(rgb, axis=1, keepdims=True) - got).max() > 1e-2


def test_the_folder_records_architecture_provenance_and_head(ir18, imported):
    _net, ckpt, _faces, _tmp = ir18
    payload = read_model_file(imported / "model.pt")
    assert payload["architecture"]["backbone"] == "ir_18" and payload["channel_order"] == "BGR"
    info = payload["imported"]
    assert info["format"] == "adaface" and info["arch"] == "ir_18" and info["official_arch"] == "ir_18"
    assert info["normalised_output"] is False and info["source"] == str(ckpt.resolve())
    import hashlib

    assert info["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert info["checkpoint"]["global_step"] == 123456 and info["checkpoint"]["hparams.train_data_path"] == "faces_emore/imgs"
    assert payload["head"]["kernel"].shape == (512, 10) and set(payload["head"]) == {"kernel", "t", "batch_mean", "batch_std"}
    embedder = load_embedder(imported)
    assert embedder.channel_order == "BGR" and embedder.input_size == 112 and not embedder.normalised_output


def test_verify_works_on_the_imported_folder(ir18, imported, capsys):
    net, _ckpt, faces, _tmp = ir18
    capsys.readouterr()
    assert main(["verify", "--model", str(imported), str(faces[0]), str(faces[1]), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    a, b = (flip_fused(net, official_input(p, "BGR"), returns_norm=True)[0] for p in faces[:2])
    assert result["cosine"] == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), abs=1e-4)


def test_the_same_import_again_is_allowed_another_model_is_refused(ir18, imported, tmp_path, capsys):
    _net, ckpt, _faces, tmp = ir18
    assert main(["import-model", str(ckpt), "--format", "adaface", "--arch", "ir_18", "--out", str(imported)]) == 0
    other = save_adaface_ckpt(tmp_path / "other.ckpt", randomise(AdaFaceOfficial("ir_18"), seed=2))
    before = (imported / "model.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["import-model", str(other), "--format", "adaface", "--out", str(imported)]) == 2
    err = _error(capsys)
    assert str(imported) in err and "already holds another model" in err
    assert (imported / "model.pt").stat().st_mtime_ns == before


def test_a_wrong_arch_names_the_file_and_the_keys(ir18, tmp_path, capsys):
    _net, ckpt, _faces, _tmp = ir18
    assert main(["import-model", str(ckpt), "--format", "adaface", "--arch", "ir_50", "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert str(ckpt) in err and "--arch ir_50" in err and "model.body.N.res_layer.1.weight" in err
    assert "[2, 2, 2, 2]" in err and "[3, 4, 14, 3]" in err
    assert not (tmp_path / "o").exists()


def _edited_ckpt(ir18, path, edit):
    ckpt = torch.load(ir18[1], weights_only=False)
    edit(ckpt["state_dict"])
    torch.save(ckpt, path)
    return path


def test_a_missing_key_is_named(ir18, tmp_path, capsys):
    bad = _edited_ckpt(ir18, tmp_path / "missing.ckpt", lambda s: s.pop("model.body.3.res_layer.2.running_var"))
    assert main(["import-model", str(bad), "--format", "adaface", "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert str(bad) in err and "state_dict.model.body.3.res_layer.2.running_var is missing" in err
    assert not (tmp_path / "o").exists()


def test_a_wrong_shape_is_named(ir18, tmp_path, capsys):
    def edit(state):
        state["model.body.4.shortcut_layer.0.weight"] = torch.zeros(256, 128, 3, 3)

    bad = _edited_ckpt(ir18, tmp_path / "shape.ckpt", edit)
    assert main(["import-model", str(bad), "--format", "adaface", "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert str(bad) in err and "state_dict.model.body.4.shortcut_layer.0.weight has shape (256, 128, 3, 3)" in err
    assert "(256, 128, 1, 1)" in err


def test_an_unknown_key_is_named(ir18, tmp_path, capsys):
    def edit(state):
        state["model.body.0.res_layer.se_block.fc1.weight"] = torch.zeros(4, 64, 1, 1)

    bad = _edited_ckpt(ir18, tmp_path / "se.ckpt", edit)
    assert main(["import-model", str(bad), "--format", "adaface", "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert "state_dict.model.body.0.res_layer.se_block.fc1.weight is not part of the architecture" in err


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path, capsys):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    assert main(["import-model", str(text), "--format", "adaface", "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert str(text) in err and "is not a PyTorch checkpoint" in err
    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(2)}, plain)
    assert main(["import-model", str(plain), "--format", "adaface", "--out", str(tmp_path / "o")]) == 2
    assert "no 'state_dict' entry" in _error(capsys)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_is_refused_without_running_it(ir18, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    bad = _edited_ckpt(ir18, tmp_path / "evil.ckpt", lambda s: s.update({"model.extra": _Evil(marker)}))
    assert main(["import-model", str(bad), "--format", "adaface", "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert str(bad) in err and "refused" in err and "system" in err
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_an_insightface_file_is_refused_with_a_pointer(tmp_path, capsys):
    pth = tmp_path / "backbone.pth"
    torch.save(ArcfaceOfficial("r18").state_dict(), pth)
    assert main(["import-model", str(pth), "--format", "adaface", "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert str(pth) in err and "--format insightface" in err


def test_official_ir_101_has_ir_100_units(tmp_path, capsys):
    """IR-101 is built with IR-100's units; checked through the importer on its keys (tiny stand-in tensors)."""
    assert OFFICIAL_ARCHS["ir_101"] == "ir_100" and IR_UNITS["ir_100"] == (3, 13, 30, 3)
    state, index = {}, 0
    for n, c in zip((3, 13, 30, 3), (64, 128, 256, 512)):
        for _ in range(n):
            state[f"model.body.{index}.res_layer.1.weight"] = torch.zeros(c, 1, 1, 1)
            index += 1
    ckpt = tmp_path / "ir101_keys.ckpt"
    torch.save({"state_dict": state, "epoch": 0}, ckpt)
    assert main(["import-model", str(ckpt), "--format", "adaface", "--arch", "ir_50", "--out", str(tmp_path / "o")]) == 2
    assert "give [3, 13, 30, 3] (ir_101)" in _error(capsys)
