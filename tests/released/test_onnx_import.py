"""``import-model --format onnx``: tiny ONNX files made here from torch modules, imported, embedded and verified
through the real commands, against the torch module fed each pixel convention by hand."""

from __future__ import annotations

import io
import json
import logging
import warnings

import cv2
import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from torch import nn

from marginlab.core.cli import main
from marginlab.models import ModelFileError
from marginlab.released.embedder import ONNX_RECORD, load_embedder
from marginlab.released.importers import import_model
from marginlab.released.onnx_model import CONVENTIONS

SIZE = 16


class Tiny(nn.Module):
    """Conv + linear to 8-d; ``normalise``: L2-normalised output; ``two_inputs``: adds a second tensor;
    ``own_scaling``: starts with ``(x - 127.5) * 0.0078125`` (Sub, Mul) like converted MXNet models."""

    def __init__(self, normalise: bool = False, two_inputs: bool = False, own_scaling: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 7 * 7, 8)
        self.normalise, self.two_inputs, self.own_scaling = normalise, two_inputs, own_scaling

    def forward(self, x, y=None):
        if self.two_inputs:
            x = x + y
        if self.own_scaling:
            x = (x - 127.5) * 0.0078125
        f = self.fc(torch.relu(self.conv(x)).flatten(1))
        return nn.functional.normalize(f, dim=1) if self.normalise else f


def tiny_onnx(path, *, normalise=False, two_inputs=False, static_batch=None, seed=0, own_scaling=False):
    """Export a seeded :class:`Tiny` with the TorchScript exporter, every weight also listed as a graph input
    (``keep_initializers_as_inputs``, what old exporters did); dynamic batch unless ``static_batch``."""
    torch.manual_seed(seed)
    module = Tiny(normalise, two_inputs, own_scaling).eval()
    example = torch.zeros(static_batch or 2, 3, SIZE, SIZE)
    args = (example, example) if two_inputs else (example,)
    names = ["x", "y"] if two_inputs else ["x"]
    axes = None if static_batch else {**{n: {0: "n"} for n in names}, "out": {0: "n"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, args, buffer, dynamo=False, keep_initializers_as_inputs=True, input_names=names,
                          output_names=["out"], dynamic_axes=axes)
    path.write_bytes(buffer.getvalue())
    graph = onnx.load_model_from_string(buffer.getvalue()).graph
    assert {i.name for i in graph.initializer} <= {i.name for i in graph.input}  # weights listed as inputs
    return path, module


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Three RGB faces written by OpenCV (PNG: lossless), one larger than the model input."""
    tmp = tmp_path_factory.mktemp("onnx_faces")
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate((SIZE, SIZE, 24)):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        paths.append(tmp / f"face{i}.png")
        cv2.imwrite(str(paths[-1]), img[:, :, ::-1])
    return paths


def reference(module, path, convention) -> np.ndarray:
    """Flip-fused feature of ``path`` computed here: the image in the convention's channel order and scale."""
    rgb = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
    rgb = cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA) if rgb.shape[0] != SIZE else rgb
    img = rgb[:, :, ::-1] if convention.channel_order == "BGR" else rgb
    x = torch.from_numpy(((img.astype(np.float32) - convention.mean) / convention.std).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        return (module(x) + module(torch.flip(x, dims=[3]))).numpy()[0]


def embed(model, images, out, *extra) -> pd.DataFrame:
    assert main(["embed", "--model", str(model), *map(str, images), "--out", str(out), "--device", "cpu", *extra]) == 0
    return pd.read_parquet(out)


@pytest.mark.parametrize("arch", ["sface", "insightface", "adaface"])
def test_import_prunes_initializer_inputs_and_embeds_in_each_convention(tmp_path, faces, arch):
    onnx_path, module = tiny_onnx(tmp_path / "tiny.onnx")
    out = tmp_path / "model"
    assert main(["import-model", str(onnx_path), "--format", "onnx", "--arch", arch, "--out", str(out)]) == 0
    record = json.loads((out / ONNX_RECORD).read_text())
    assert record["onnx_path"] == str(onnx_path.resolve()) and record["input_name"] == "x"
    assert record["pruned_inputs"] == 4 and record["input_size"] == SIZE and record["embedding_size"] == 8
    assert record["convention"] == arch and record["channel_order"] == CONVENTIONS[arch].channel_order
    assert record["normalised_output"] is False
    assert record["imported"] == {"format": "onnx", "source": str(onnx_path.resolve()), "sha256": record["sha256"],
                                  "arch": arch}
    frame = embed(out, faces, tmp_path / "e.parquet")
    for row, path in zip(frame.itertuples(), faces):
        want = reference(module, path, CONVENTIONS[arch])
        assert row.norm == pytest.approx(np.linalg.norm(want), rel=1e-5)
        np.testing.assert_allclose(row.embedding, want / np.linalg.norm(want), atol=1e-5)


def test_arch_insightface_feeds_raw_pixels_to_a_graph_that_scales_them_itself(tmp_path, faces):
    onnx_path, module = tiny_onnx(tmp_path / "mx.onnx", own_scaling=True)
    out = import_model(onnx_path, "onnx", tmp_path / "model", arch="insightface")
    assert json.loads((out / ONNX_RECORD).read_text())["convention"] == "insightface-raw"
    frame = embed(out, faces, tmp_path / "e.parquet")
    for row, path in zip(frame.itertuples(), faces):
        want = reference(module, path, CONVENTIONS["sface"])  # RGB, raw 0..255
        np.testing.assert_allclose(row.embedding, want / np.linalg.norm(want), atol=1e-5)


def test_an_input_no_node_reads_is_set_aside(tmp_path, faces):
    """Converters can leave inputs behind (OpenCV Zoo's int8bq SFace keeps the names of the weights it replaced):
    onnxruntime would demand a value for each; the import drops them."""
    onnx_path, module = tiny_onnx(tmp_path / "tiny.onnx")
    model = onnx.load(str(onnx_path))
    model.graph.input.append(onnx.helper.make_tensor_value_info("left_behind", onnx.TensorProto.FLOAT, [4, 3]))
    onnx.save(model, str(onnx_path))
    out = import_model(onnx_path, "onnx", tmp_path / "model", arch="adaface")
    assert json.loads((out / ONNX_RECORD).read_text())["pruned_inputs"] == 5
    row = next(embed(out, faces[:1], tmp_path / "e.parquet").itertuples())
    want = reference(module, faces[0], CONVENTIONS["adaface"])
    np.testing.assert_allclose(row.embedding, want / np.linalg.norm(want), atol=1e-5)


def test_verify_through_the_command(tmp_path, faces, capsys):
    onnx_path, _ = tiny_onnx(tmp_path / "tiny.onnx")
    out = import_model(onnx_path, "onnx", tmp_path / "model", arch="insightface")
    capsys.readouterr()
    assert main(["verify", "--model", str(out), str(faces[0]), str(faces[0]), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    same = json.loads(text[text.index("{"):])
    assert same["cosine"] == pytest.approx(1.0, abs=1e-6) and same["decision_at"] == {}
    assert main(["verify", "--model", str(out), str(faces[0]), str(faces[1]), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert json.loads(text[text.index("{"):])["cosine"] < 0.9999


def test_a_static_batch_is_run_in_chunks(tmp_path, faces):
    onnx_path, module = tiny_onnx(tmp_path / "static.onnx", static_batch=2)
    out = import_model(onnx_path, "onnx", tmp_path / "model", arch="adaface")
    embedder = load_embedder(out)
    assert embedder.module.static_batch == 2
    frame = embed(out, faces, tmp_path / "e.parquet")  # 3 images: one full chunk of 2, one padded
    for row, path in zip(frame.itertuples(), faces):
        want = reference(module, path, CONVENTIONS["adaface"])
        np.testing.assert_allclose(row.embedding, want / np.linalg.norm(want), atol=1e-5)


def test_the_wrapper_survives_eval_to_and_has_no_parameters(tmp_path):
    onnx_path, _ = tiny_onnx(tmp_path / "tiny.onnx")
    embedder = load_embedder(import_model(onnx_path, "onnx", tmp_path / "model", arch="adaface"))
    module = embedder.module
    assert next(module.parameters(), None) is None and module.eval().to("cpu") is module
    y = module(torch.zeros(5, 3, SIZE, SIZE))
    assert y.dtype == torch.float32 and y.shape == (5, 8)
    with pytest.raises(ValueError, match=r"expects input \(B, 3, 16, 16\)"):
        module(torch.zeros(1, 3, SIZE + 1, SIZE + 1))


def test_a_normalised_output_is_flagged_and_embed_warns(tmp_path, faces, caplog):
    onnx_path, _ = tiny_onnx(tmp_path / "unit.onnx", normalise=True)
    out = import_model(onnx_path, "onnx", tmp_path / "model", arch="adaface")
    record = json.loads((out / ONNX_RECORD).read_text())
    assert record["normalised_output"] is True
    assert all(abs(n - 1) < 1e-4 for n in record["probe_norms"])
    with caplog.at_level(logging.WARNING):
        assert load_embedder(out).normalised_output is True
    assert "L2-normalised" in caplog.text and "norm analyses refuse it" in caplog.text
    onnx_path, _ = tiny_onnx(tmp_path / "plain.onnx")
    assert load_embedder(import_model(onnx_path, "onnx", tmp_path / "plain", arch="adaface")).normalised_output is False


def test_two_real_inputs_are_refused(tmp_path, capsys):
    onnx_path, _ = tiny_onnx(tmp_path / "two.onnx", two_inputs=True)
    with pytest.raises(ValueError, match=r"2 real inputs \(x, y\); an embedder takes exactly one image input"):
        import_model(onnx_path, "onnx", tmp_path / "model", arch="adaface")
    assert main(["import-model", str(onnx_path), "--format", "onnx", "--arch", "adaface",
                 "--out", str(tmp_path / "m2")]) == 2
    assert "2 real inputs" in capsys.readouterr().err
    assert not (tmp_path / "model").exists() and not (tmp_path / "m2").exists()


def test_a_changed_or_missing_file_is_refused_at_load(tmp_path, faces, capsys):
    onnx_path, _ = tiny_onnx(tmp_path / "tiny.onnx")
    out = import_model(onnx_path, "onnx", tmp_path / "model", arch="adaface")
    other, _ = tiny_onnx(tmp_path / "other.onnx", seed=1)  # a valid model, other weights
    onnx_path.write_bytes(other.read_bytes())
    with pytest.raises(ModelFileError, match=r"tiny\.onnx: sha256 .* differs from .* recorded at import"):
        load_embedder(out)
    assert main(["embed", "--model", str(out), str(faces[0]), "--out", str(tmp_path / "e.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "tiny.onnx" in err and "Traceback" not in err
    assert not (tmp_path / "e.parquet").exists()
    onnx_path.unlink()
    with pytest.raises(ModelFileError, match=r"tiny\.onnx: the ONNX file .* cannot be read"):
        load_embedder(out)


def test_import_errors_name_the_file_and_what_was_expected(tmp_path):
    onnx_path, _ = tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(ValueError, match=r"tiny\.onnx: an ONNX file does not say how it wants its pixels.*--arch"):
        import_model(onnx_path, "onnx", tmp_path / "a")
    with pytest.raises(ValueError, match="not an ONNX input convention; allowed: sface, insightface"):
        import_model(onnx_path, "onnx", tmp_path / "b", arch="ir_50")
    with pytest.raises(ValueError, match="was not written by marginlab export-onnx"):
        import_model(onnx_path, "onnx", tmp_path / "c", arch="marginlab")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(ValueError, match=r"junk\.onnx: not an ONNX model"):
        import_model(junk, "onnx", tmp_path / "d", arch="sface")
    out = import_model(onnx_path, "onnx", tmp_path / "e", arch="sface")
    with pytest.raises(ValueError, match="already holds a model"):
        import_model(onnx_path, "onnx", out, arch="sface")
