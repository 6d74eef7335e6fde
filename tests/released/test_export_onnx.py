"""``marginlab export-onnx``: a trained run and an imported-style model exported, checked against torch, imported
back with no --arch and embedded like the torch model."""

from __future__ import annotations

import re

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from tiny_train import make_params

from marginlab.backbones import build_backbone
from marginlab.core.cli import main
from marginlab.models import save_imported_model
from marginlab.released import export_onnx as export_module
from marginlab.released.embedder import ONNX_RECORD, load_embedder
from marginlab.released.export_onnx import ExportError, export_onnx
from marginlab.released.importers import import_model
from marginlab.train import run_train


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    """A tiny trained run (1 epoch, IR-18 x1/8 at 32x32, BGR) and four faces written by OpenCV."""
    tmp = tmp_path_factory.mktemp("export")
    run_train(make_params(tiny_prepared, tmp, train={"epochs": 1}), "cos")
    rng = np.random.default_rng(0)
    images = []
    for i, size in enumerate((32, 32, 40, 28)):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        images.append(tmp / f"face{i}.png")
        cv2.imwrite(str(images[-1]), img[:, :, ::-1])
    return tmp / "runs" / "cos", images


@pytest.fixture(scope="module")
def imported_style(tmp_path_factory):
    """A model.pt as import-model writes one (architecture + provenance, no run), RGB, random weights."""
    folder = tmp_path_factory.mktemp("imported") / "model"
    folder.mkdir()
    torch.manual_seed(0)
    backbone = build_backbone("ir_18", embedding_size=24, input_size=32, width=0.125)
    for m in backbone.modules():  # non-trivial BatchNorm statistics, so eval mode matters
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    save_imported_model(folder / "model.pt", backbone="ir_18", backbone_state=backbone.state_dict(),
                        embedding_size=24, input_size=32, channel_order="RGB",
                        imported={"format": "test", "source": "made in the test", "sha256": "0" * 64, "arch": "ir_18"},
                        options={"width": 0.125})
    return folder


def _embed(model, images, out) -> pd.DataFrame:
    assert main(["embed", "--model", str(model), *map(str, images), "--out", str(out), "--device", "cpu"]) == 0
    return pd.read_parquet(out)


def _round_trip(folder, images, tmp_path, capsys):
    """Export ``folder`` by the command, import it back with no --arch, embed with both; return the figures."""
    onnx_path = tmp_path / "model.onnx"
    assert main(["export-onnx", str(folder), "--out", str(onnx_path)]) == 0
    said = capsys.readouterr().out
    relative = float(re.search(r"max \|diff\| \S+, (\S+) of the largest output", said).group(1))
    assert relative <= 1e-4
    assert main(["import-model", str(onnx_path), "--format", "onnx", "--out", str(tmp_path / "back")]) == 0
    torch_frame = _embed(folder, images, tmp_path / "torch.parquet")
    onnx_frame = _embed(tmp_path / "back", images, tmp_path / "onnx.parquet")
    np.testing.assert_allclose(np.stack(onnx_frame["embedding"]), np.stack(torch_frame["embedding"]), atol=1e-4)
    np.testing.assert_allclose(onnx_frame["norm"], torch_frame["norm"], rtol=1e-4)
    return onnx_path, relative


def test_trained_run_round_trip(trained, tmp_path, capsys):
    run_dir, images = trained
    onnx_path, relative = _round_trip(run_dir, images, tmp_path, capsys)
    model = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["marginlab.channel_order"] == "BGR" and meta["marginlab.input_size"] == "32"
    assert meta["marginlab.normalisation"] == "(x/255-0.5)/0.5" and meta["marginlab.embedding_size"] == "32"
    assert str(run_dir.resolve()) in meta["marginlab.source"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch axis
    backbone = load_embedder(run_dir).module
    for n in (1, 3, 9):
        x = torch.from_numpy(np.random.default_rng(n).uniform(-1, 1, (n, 3, 32, 32)).astype(np.float32))
        got = session.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            want = backbone(x).numpy()
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    record = (tmp_path / "back" / ONNX_RECORD).read_text()
    assert '"convention": "marginlab"' in record and '"channel_order": "BGR"' in record


def test_imported_style_model_round_trip(imported_style, trained, tmp_path, capsys):
    _, images = trained
    onnx_path, _ = _round_trip(imported_style, images, tmp_path, capsys)
    back = load_embedder(tmp_path / "back")
    assert back.channel_order == "RGB" and back.input_size == 32 and back.embedding_size == 24
    assert "made in the test" in back.info["imported"]["exported_from"]


def test_a_failing_check_deletes_the_file(trained, tmp_path, monkeypatch):
    run_dir, _ = trained
    out = tmp_path / "bad.onnx"
    monkeypatch.setattr(export_module, "MAX_RELATIVE_DIFF", -1.0)
    with pytest.raises(ExportError, match=r"bad\.onnx: onnxruntime and torch disagree: .* the file was deleted"):
        export_onnx(run_dir, out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_refusals(trained, tmp_path, capsys):
    run_dir, _ = trained
    out = export_onnx(run_dir, tmp_path / "m.onnx")["path"]
    back = import_model(out, "onnx", tmp_path / "back")
    with pytest.raises(ExportError, match="is an imported ONNX model already"):
        export_onnx(back, tmp_path / "again.onnx")
    assert main(["export-onnx", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.onnx"),
                 "--params", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
