"""``marginlab embed`` / ``marginlab verify``: a trained model on image files, as evaluation embeds them."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from pipeline_helpers import stage_command
from tiny_train import make_params

from marginlab.data.model_input import to_model_input
from marginlab.inference import embed_files, model_dir, verify_pair
from marginlab.models import ModelFileError, load_model, model_info
from marginlab.train import run_train


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    """A tiny trained run (1 epoch) and four face images written by OpenCV: colour PNG/JPEG, grayscale, larger."""
    tmp = tmp_path_factory.mktemp("inference")
    params = make_params(tiny_prepared, tmp, train={"epochs": 1})
    run_train(params, "cos")
    rng = np.random.default_rng(0)
    images = []
    for i, (ext, size, gray) in enumerate((("png", 24, False), ("jpg", 24, False), ("png", 24, True), ("jpg", 40, False))):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        path = tmp / f"face{i}.{ext}"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if gray else img[:, :, ::-1])
        images.append(path)
    return tmp / "runs" / "cos", images


def _reference(run_dir, path) -> np.ndarray:
    """The flip-fused, normalised embedding computed here from the model file and the input convention."""
    backbone, _, resolved = load_model(run_dir)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]  # grayscale files come back as 3 equal channels
    x = to_model_input([np.ascontiguousarray(img)], resolved.model.input_size, model_info(run_dir)["channel_order"])
    with torch.no_grad():
        f = (backbone(x) + backbone(torch.flip(x, dims=[3]))).numpy()[0]
    return f / np.linalg.norm(f), float(np.linalg.norm(f))


def test_embeddings_and_norms_match_the_model_and_input_convention(trained):
    run_dir, images = trained
    frame = embed_files(run_dir, images, device="cpu")
    assert list(frame.columns) == ["path", "norm", "embedding"] and len(frame) == len(images)
    for row, path in zip(frame.itertuples(), images):
        unit, norm = _reference(run_dir, path)
        assert row.path == str(path)
        np.testing.assert_allclose(row.embedding, unit, atol=1e-5)
        assert row.norm == pytest.approx(norm, rel=1e-5)


def test_verify_reports_cosine_and_the_decision_at_each_sets_threshold(trained, tmp_path):
    run_dir, images = trained
    frame = embed_files(run_dir, images[:2], device="cpu")
    cosine = float(np.dot(frame["embedding"][0], frame["embedding"][1]))
    out = verify_pair(run_dir, images[0], images[1], device="cpu")
    assert out["cosine"] == pytest.approx(cosine, abs=1e-6) and out["distance"] == pytest.approx(2 - 2 * cosine)
    assert out["decision_at"] == {}  # the run was never evaluated: no threshold to decide at
    copy = tmp_path / "cos"
    copy.mkdir()
    (copy / "model.pt").write_bytes((run_dir / "model.pt").read_bytes())
    d = out["distance"]
    (copy / "metrics.json").write_text(json.dumps({"verification": {
        "hq": {"threshold_mean": d + 0.01}, "lq": {"threshold_mean": d - 0.01}}}))
    decided = verify_pair(copy, images[0], images[1], device="cpu")["decision_at"]
    assert decided == {"hq": {"threshold": d + 0.01, "same": True}, "lq": {"threshold": d - 0.01, "same": False}}
    same = verify_pair(copy, images[2], images[2], device="cpu")
    assert same["cosine"] == pytest.approx(1.0, abs=1e-5) and same["decision_at"]["hq"]["same"]


def test_model_is_a_folder_or_a_run_of_the_params_file(trained, tmp_path):
    run_dir, _ = trained
    assert model_dir(run_dir) == run_dir
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"runs_dir": str(run_dir.parent), "runs": {"cos": {"head": "cosface"},
                                                                              "other": {"head": "arcface"}}}))
    assert model_dir("cos", params) == run_dir
    with pytest.raises(ModelFileError, match="train the run first"):
        model_dir("other", params)
    with pytest.raises(ModelFileError, match="neither a folder holding model.pt nor a run"):
        model_dir("nope", params)


def test_the_commands_write_atomically_and_fail_cleanly(trained, tmp_path, capsys):
    run_dir, images = trained
    out = tmp_path / "emb.parquet"
    assert stage_command("embed").main(["--model", str(run_dir), *map(str, images), "--out", str(out),
                                        "--device", "cpu"]) == 0
    assert len(pd.read_parquet(out)) == len(images)
    assert stage_command("verify").main(["--model", str(run_dir), str(images[0]), str(images[1]),
                                         "--device", "cpu"]) == 0
    assert "cosine" in json.loads(capsys.readouterr().out.split("\n", 1)[1])
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(images[1].read_bytes()[:100])  # a truncated JPEG
    out2 = tmp_path / "emb2.parquet"
    assert stage_command("embed").main(["--model", str(run_dir), str(bad), "--out", str(out2)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "broken.jpg" in err and "Traceback" not in err and not out2.exists()
    assert stage_command("verify").main(["--model", str(tmp_path / "none"), str(images[0]), str(images[1])]) == 2


def test_align_detect_finds_the_face_in_a_photo_as_prepare_does(trained, tmp_path):
    """A rendered scene (a face somewhere in a larger photo) is detected, warped to the ArcFace template and
    embedded like that crop; a photo without a face gets its status and no embedding, and verify refuses it."""
    from marginlab.data.scenes import render_scene
    from marginlab.inference import align_faces, read_faces

    run_dir, _ = trained
    scene = render_scene(0, 0, 0, canvas=(200, 160), face_px=(90, 91), max_rotation=0)
    photo, blank = tmp_path / "photo.jpg", tmp_path / "blank.png"
    cv2.imwrite(str(photo), scene.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(blank), np.full((120, 120, 3), 127, np.uint8))
    frame = embed_files(run_dir, [photo, blank], device="cpu", align="detect")
    assert list(frame["status"]) == ["ok", "no_face"]
    assert np.isfinite(frame["norm"][0]) and np.isnan(frame["norm"][1]) and frame["embedding"][1] is None
    crops, statuses = align_faces(read_faces([photo]))
    assert statuses == ["ok"] and crops[0].shape == (112, 112, 3)
    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), crops[0][:, :, ::-1])  # lossless: the same pixels
    np.testing.assert_allclose(embed_files(run_dir, [crop], device="cpu")["embedding"][0], frame["embedding"][0],
                               atol=1e-5)
    with pytest.raises(ValueError, match="blank.png: no face kept by the detector"):
        verify_pair(run_dir, photo, blank, device="cpu", align="detect")
    with pytest.raises(ValueError, match="align must be"):
        embed_files(run_dir, [photo], align="mtcnn")


def test_a_folder_is_its_images_in_sorted_order(trained, tmp_path, capsys):
    run_dir, images = trained
    folder = tmp_path / "faces"
    (folder / "sub").mkdir(parents=True)
    copies = [folder / "b.png", folder / "sub" / "a.jpg", folder / "a.png"]
    for src, dest in zip(images, copies):
        dest.write_bytes(src.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(images[0].read_bytes())
    out = tmp_path / "folder.parquet"
    assert stage_command("embed").main(["--model", str(run_dir), str(folder), str(images[3]), "--out", str(out),
                                        "--device", "cpu"]) == 0
    frame = pd.read_parquet(out)
    assert list(frame["path"]) == [str(folder / "a.png"), str(folder / "b.png"), str(folder / "sub" / "a.jpg"), str(images[3])]
    direct = embed_files(run_dir, [folder / "a.png"], device="cpu")
    np.testing.assert_allclose(frame["embedding"][0], direct["embedding"][0], atol=1e-6)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert stage_command("embed").main(["--model", str(run_dir), str(empty), "--out", str(tmp_path / "e.parquet")]) == 2
    assert "empty: folder holds no image" in capsys.readouterr().err
