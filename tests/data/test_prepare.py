"""The prepare stage: synthetic layout + manifest, ingest of folders / RecordIO / .bin / IJB, atomicity, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from prepare_inputs import TINY_SYNTH, tiny_params

from marginlab.core.config import validate_params
from marginlab.data.formats import (
    IMAGE_DIR_FILE,
    CorruptImageError,
    DataFormatError,
    IJBFormatError,
    MissingFileError,
    encode_jpeg,
    encode_png,
    open_recordio,
    read_bin_encoded,
    read_ijb,
    write_bin,
    write_ijb_meta,
    write_recordio,
)
from marginlab.data.model_input import NORMALISATION
from marginlab.data.prepare import run_prepare
from marginlab.data.prepare.files import hash_tree, link_or_copy
from marginlab.core.io import sha256_file

REPO = Path(__file__).resolve().parents[2]

def _face(rng, size=112):
    """A random smooth colour image (stand-in for a face crop; 112 = data.image_size, kept as is)."""
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _tiny_bin(path: Path, n_pairs=10, seed=0, corrupt_at=None):
    rng = np.random.default_rng(seed)
    images = [encode_jpeg(_face(rng)) for _ in range(2 * n_pairs)]
    if corrupt_at is not None:
        images[corrupt_at] = images[corrupt_at][:40]
    issame = np.arange(n_pairs) % 2 == 0
    write_bin(path, images, issame)
    return issame


def _identity_folders(root: Path, classes=3, per_class=3, seed=0):
    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = root / f"person_{c:02d}"
        d.mkdir(parents=True)
        for k in range(per_class):
            img = _face(rng)
            if k == 0:
                (d / f"{k}.png").write_bytes(encode_png(img))
            else:
                (d / f"{k}.jpg").write_bytes(encode_jpeg(img))
    return root


def _leftovers(parent: Path):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- synthetic
@pytest.fixture(scope="module")
def synthetic_prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("prep")
    params = tiny_params(source="synthetic", synthetic=TINY_SYNTH, channel_order="RGB", seed=5)
    manifest = run_prepare(params, base / "prepared", workers=1, progress=False)
    return base, params, manifest


def test_synthetic_layout_and_manifest(synthetic_prepared):
    base, params, manifest = synthetic_prepared
    out = base / "prepared"
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert manifest["source"] == "synthetic" and manifest["channel_order"] == "RGB"
    assert manifest["normalisation"] == NORMALISATION == "(x / 255 - 0.5) / 0.5"
    c = manifest["counts"]
    assert (c["train_images"], c["train_classes"]) == (12, 4)
    assert c["verification"]["hq"]["pairs"] == c["verification"]["lq"]["pairs"] == 20
    assert c["ijb"]["ijb_syn"]["templates"] == 4 and c["tinyface"]["Gallery_Distractor"] == 3
    assert manifest["generator"]["seed"] == 5 and manifest["generator"]["synthetic"]["image_size"] == 64
    assert manifest["skipped"] == [] and manifest["links"] == []
    # every regular file except the manifest itself is listed with its true sha256 and size
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json", ".marginlab-output"}  # the ownership marker: not data
    for rel in ("train.rec", "verification/lq.bin", "samples.png"):
        assert manifest["files"][rel]["sha256"] == hashlib.sha256((out / rel).read_bytes()).hexdigest()
        assert manifest["files"][rel]["bytes"] == (out / rel).stat().st_size
    assert _leftovers(base) == []
    reader = open_recordio(out / "train.rec")
    assert len(reader) == 12
    meta = pd.read_parquet(out / "train_meta.parquet")
    assert {"index", "label", "gt_quality", "degradations", *(f"sev_{t}" for t in ("blur", "low_resolution", "noise", "jpeg", "exposure"))} <= set(meta.columns)


def test_synthetic_outputs_are_readable_by_others(synthetic_prepared):
    base, _, _ = synthetic_prepared
    mask = os.umask(0)
    os.umask(mask)
    out = base / "prepared"
    assert (out.stat().st_mode & 0o777) == 0o777 & ~mask
    assert ((out / "train.rec").stat().st_mode & 0o777) == 0o666 & ~mask


def test_synthetic_prepare_is_reproducible(synthetic_prepared, tmp_path):
    _, params, manifest = synthetic_prepared
    again = run_prepare(params, tmp_path / "again", workers=2, progress=False)
    assert again["files"] == manifest["files"]
    other = run_prepare(params.model_copy(update={"seed": 6}), tmp_path / "other", workers=1, progress=False)
    assert other["files"]["train.rec"]["sha256"] != manifest["files"]["train.rec"]["sha256"]


def test_prepare_replaces_previous_output_atomically(tmp_path):
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    (out / ".marginlab-output").write_text("")  # an earlier prepare's output (a folder it did not mark is refused)
    params = tiny_params(source="synthetic", synthetic=TINY_SYNTH, val_bins=[str(tmp_path / "missing.bin")])
    with pytest.raises(MissingFileError, match="data.val_bins.*missing.bin"):
        run_prepare(params, out, workers=1, progress=False)
    # the failed run left the old output untouched and no temporary directory behind
    assert (out / "stale.txt").read_text() == "old"
    assert _leftovers(tmp_path) == []
    run_prepare(tiny_params(source="synthetic", synthetic=TINY_SYNTH), out, workers=1, progress=False)
    assert not (out / "stale.txt").exists() and (out / "manifest.json").exists()
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- identity folders + .bin
def test_folders_and_bin_ingest(tmp_path):
    raw = _identity_folders(tmp_path / "raw" / "faces")
    issame = _tiny_bin(tmp_path / "raw" / "mini_lfw.bin")
    params = tiny_params(source="folders", name="mini", train_folders="raw/faces", val_bins=["raw/mini_lfw.bin"])
    manifest = run_prepare(params, tmp_path / "prepared", base_dir=tmp_path, progress=False)
    out = tmp_path / "prepared"
    reader = open_recordio(out / "train.rec")
    assert len(reader) == 9 and reader.num_classes == 3
    meta = pd.read_parquet(out / "train_meta.parquet")
    assert meta["label"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    classes = pd.read_parquet(out / "train_classes.parquet")
    assert classes["class_name"].tolist() == ["person_00", "person_01", "person_02"]
    # the .bin is byte-identical and readable under its stem
    assert sha256_file(out / "verification" / "mini_lfw.bin") == sha256_file(tmp_path / "raw" / "mini_lfw.bin")
    _, got = read_bin_encoded(out / "verification" / "mini_lfw.bin")
    assert np.array_equal(got, issame)
    assert manifest["counts"]["verification"]["mini_lfw"]["pairs"] == 10
    assert manifest["counts"]["train_ingest"]["reencoded"] == 3  # the PNGs
    assert manifest["sources"]["train"] == str(raw)
    assert (out / "samples.png").stat().st_size > 1000
    assert "generator" not in manifest


def test_folders_corrupt_image_strict_and_skipped(tmp_path):
    raw = _identity_folders(tmp_path / "faces")
    bad = raw / "person_01" / "9.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(CorruptImageError, match="9.jpg"):
        run_prepare(tiny_params(source="folders", train_folders=str(raw)), tmp_path / "p1", progress=False)
    assert not (tmp_path / "p1").exists()
    manifest = run_prepare(tiny_params(source="folders", train_folders=str(raw), skip_corrupt=True), tmp_path / "p2", progress=False)
    assert manifest["counts"]["train_images"] == 9
    assert [Path(s["source"]).name for s in manifest["skipped"]] == ["9.jpg"]


def test_bin_with_corrupt_image(tmp_path):
    _tiny_bin(tmp_path / "v.bin", n_pairs=10, corrupt_at=5)  # image 5 belongs to pair 2
    raw = _identity_folders(tmp_path / "faces", classes=2, per_class=2)
    with pytest.raises(CorruptImageError, match=r"v.bin \(image 5\)"):
        run_prepare(tiny_params(source="folders", train_folders=str(raw), val_bins=[str(tmp_path / "v.bin")]), tmp_path / "p1", progress=False)
    m = run_prepare(tiny_params(source="folders", train_folders=str(raw), val_bins=[str(tmp_path / "v.bin")], skip_corrupt=True), tmp_path / "p2", progress=False)
    assert m["counts"]["verification"]["v"]["pairs"] == 9
    assert [(s["image"], s["pair"]) for s in m["skipped"]] == [(5, 2)]
    images, issame = read_bin_encoded(tmp_path / "p2" / "verification" / "v.bin")
    assert len(images) == 18 and np.array_equal(issame, np.delete(np.arange(10) % 2 == 0, 2))


def test_duplicate_bin_stems_rejected(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _tiny_bin(tmp_path / "a" / "lfw.bin")
    _tiny_bin(tmp_path / "b" / "lfw.bin")
    raw = _identity_folders(tmp_path / "faces", classes=2, per_class=2)
    params = tiny_params(source="folders", train_folders=str(raw), val_bins=[str(tmp_path / "a" / "lfw.bin"), str(tmp_path / "b" / "lfw.bin")])
    with pytest.raises(DataFormatError, match="lfw.bin"):
        run_prepare(params, tmp_path / "p", progress=False)


# --------------------------------------------------------------------------- RecordIO
def _tiny_rec(path: Path, labels, corrupt_at=None):
    rng = np.random.default_rng(1)
    samples = []
    for i, lab in enumerate(labels):
        data = encode_jpeg(_face(rng))
        if i == corrupt_at:
            data = data[:30]
        samples.append((data, lab))
    write_recordio(path, samples)


def test_recordio_ingest_links_and_labels(tmp_path):
    src = tmp_path / "raw" / "train.rec"
    src.parent.mkdir()
    _tiny_rec(src, [0, 0, 1, 1, 1, 2])
    manifest = run_prepare(tiny_params(source="recordio", train_rec=str(src)), tmp_path / "prepared", progress=False)
    out = tmp_path / "prepared"
    assert manifest["counts"]["train_ingest"]["ingest"] in ("hardlink", "copy")
    assert (out / "train.rec").read_bytes() == src.read_bytes()
    assert (out / "train.idx").read_bytes() == src.with_suffix(".idx").read_bytes()
    meta = pd.read_parquet(out / "train_meta.parquet")
    assert meta["label"].tolist() == [0, 0, 1, 1, 1, 2] and meta["index"].tolist() == list(range(6))
    assert (manifest["counts"]["train_images"], manifest["counts"]["train_classes"]) == (6, 3)


def test_recordio_skip_corrupt_rewrites_and_renumbers(tmp_path):
    src = tmp_path / "train.rec"
    _tiny_rec(src, [0, 0, 1, 2, 2], corrupt_at=2)  # the only image of class 1 is corrupt
    with pytest.raises(CorruptImageError):
        # strict mode does not decode up front, so check that training would hit it: decode all
        reader = open_recordio(src)
        reader.validate(decode=True, progress=False)
    m = run_prepare(tiny_params(source="recordio", train_rec=str(src), skip_corrupt=True), tmp_path / "p", progress=False)
    assert m["counts"]["train_ingest"]["ingest"] == "rewritten"
    assert m["counts"]["train_ingest"]["dropped_classes"] == [1]
    assert [s["key"] for s in m["skipped"]] == [3]
    meta = pd.read_parquet(tmp_path / "p" / "train_meta.parquet")
    assert meta["label"].tolist() == [0, 0, 1, 1]
    assert open_recordio(tmp_path / "p" / "train.rec").num_classes == 2


def test_recordio_missing_files(tmp_path):
    with pytest.raises(MissingFileError, match="data.train_rec.*nope.rec"):
        run_prepare(tiny_params(source="recordio", train_rec=str(tmp_path / "nope.rec")), tmp_path / "p", progress=False)
    src = tmp_path / "t.rec"
    _tiny_rec(src, [0, 1])
    src.with_suffix(".idx").unlink()
    with pytest.raises(MissingFileError, match=r"\.idx"):
        run_prepare(tiny_params(source="recordio", train_rec=str(src)), tmp_path / "p", progress=False)
    assert not (tmp_path / "p").exists()


# --------------------------------------------------------------------------- IJB
def test_ijb_crops_are_read_under_the_prepare_limit(tmp_path):
    """IJB crops are referenced, and decoded later by quality and evaluate: data.max_image_pixels travels
    with the reference (issue #21), so a crop larger than the limit is refused there, before decoding."""
    from marginlab.data.formats.errors import ImageTooLargeError

    _tiny_ijb(tmp_path / "IJBX", "ijbx")  # 120 x 120 crops
    _identity_folders(tmp_path / "faces", classes=2, per_class=2)
    entry = {"name": "ijbx", "meta_dir": "IJBX/meta", "image_dir": "IJBX/loose_crop"}
    for limit, ok in ((120 * 120, True), (120 * 120 - 1, False)):
        params = validate_params({"data": {"source": "folders", "train_folders": "faces", "ijb": [entry], "image_size": 120,
                                           "max_image_pixels": limit}, "train": {"batch_size": 4}})
        out = tmp_path / f"p{limit}"
        run_prepare(params, out, base_dir=tmp_path, progress=False)
        ijb = read_ijb(out / "ijb" / "ijbx", "ijbx")
        if ok:
            assert ijb.load_aligned(0).shape == (112, 112, 3)
        else:
            with pytest.raises(ImageTooLargeError, match=r"0\.jpg.*data\.max_image_pixels"):
                ijb.load_aligned(0)


def _tiny_ijb(root: Path, name: str, n=6):
    crops = root / "loose_crop"
    crops.mkdir(parents=True)
    rng = np.random.default_rng(2)
    rows = []
    for i in range(n):
        (crops / f"{i}.jpg").write_bytes(encode_jpeg(_face(rng, 120)))
        lm = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], float) + i
        rows.append({"image": f"{i}.jpg", "tid": i // 2 + 1, "mid": i + 1, "landmarks": lm.ravel(), "score": 0.9})
    pairs = pd.DataFrame({"tid1": [1, 1, 2], "tid2": [2, 3, 3], "label": [0, 0, 1]})
    write_ijb_meta(root, name, pd.DataFrame(rows), pairs)


def test_ijb_ingest_references_crops_without_symlinks(tmp_path):
    _tiny_ijb(tmp_path / "IJBX", "ijbx")
    _identity_folders(tmp_path / "faces", classes=2, per_class=2)
    entry = {"name": "ijbx", "meta_dir": "IJBX/meta", "image_dir": "IJBX/loose_crop"}
    m = run_prepare(tiny_params(source="folders", train_folders="faces", ijb=[entry]), tmp_path / "p", base_dir=tmp_path, progress=False)
    root = tmp_path / "p" / "ijb" / "ijbx"
    # no symlink anywhere (DVC would drop it from the output) and no copy of the crops
    assert not any(p.is_symlink() for p in (tmp_path / "p").rglob("*")) and m["links"] == []
    assert not (root / "loose_crop").exists()
    assert not any(k.startswith("ijb/ijbx/loose_crop") for k in m["files"])
    # the crops are inside the project: referenced relative to the set, so the prepared tree can move
    assert json.loads((root / IMAGE_DIR_FILE).read_text()) == {"image_dir": "../../../IJBX/loose_crop",
                                                               "max_image_pixels": 200_000_000}
    assert "ijb/ijbx/image_dir.json" in m["files"] and "ijb/ijbx/meta/ijbx_face_tid_mid.txt" in m["files"]
    assert m["counts"]["ijb"]["ijbx"] == {**m["counts"]["ijb"]["ijbx"], "faces": 6, "templates": 3, "pairs": 3, "genuine": 1}
    s = read_ijb(root, "ijbx")
    assert s.image_dir.resolve() == (tmp_path / "IJBX" / "loose_crop").resolve()
    assert s.load_aligned(0).shape == (112, 112, 3)
    shutil.move(tmp_path / "p", tmp_path / "moved")
    assert read_ijb(tmp_path / "moved" / "ijb" / "ijbx", "ijbx").load_aligned(5).shape == (112, 112, 3)


def test_ijb_crops_outside_the_project_are_referenced_absolutely(tmp_path):
    _tiny_ijb(tmp_path / "datasets" / "IJBX", "ijbx")
    project = tmp_path / "project"
    _identity_folders(project / "faces", classes=2, per_class=2)
    crops = tmp_path / "datasets" / "IJBX" / "loose_crop"
    entry = {"name": "ijbx", "meta_dir": str(crops.parent / "meta"), "image_dir": str(crops)}
    run_prepare(tiny_params(source="folders", train_folders="faces", ijb=[entry]), project / "p", base_dir=project, progress=False)
    root = project / "p" / "ijb" / "ijbx"
    assert json.loads((root / IMAGE_DIR_FILE).read_text()) == {"image_dir": str(crops.resolve()), "max_image_pixels": 200_000_000}
    assert read_ijb(root, "ijbx").image_dir == crops.resolve()
    (root / IMAGE_DIR_FILE).write_text("{}")
    with pytest.raises(IJBFormatError, match=r"image_dir.json: expected"):
        read_ijb(root, "ijbx").image_dir


def test_ijb_missing_crop_named(tmp_path):
    _tiny_ijb(tmp_path / "IJBX", "ijbx")
    (tmp_path / "IJBX" / "loose_crop" / "4.jpg").unlink()
    raw = _identity_folders(tmp_path / "faces", classes=2, per_class=2)
    entry = {"name": "ijbx", "meta_dir": str(tmp_path / "IJBX" / "meta"), "image_dir": str(tmp_path / "IJBX" / "loose_crop")}
    with pytest.raises(MissingFileError, match=r"1 of 6 images.*4\.jpg"):
        run_prepare(tiny_params(source="folders", train_folders=str(raw), ijb=[entry]), tmp_path / "p", progress=False)
    entry["meta_dir"] = str(tmp_path)
    with pytest.raises(MissingFileError, match="meta_dir"):
        run_prepare(tiny_params(source="folders", train_folders=str(raw), ijb=[entry]), tmp_path / "p", progress=False)


# --------------------------------------------------------------------------- helpers and CLI
def test_hash_tree_and_link_or_copy(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_bytes(b"abc")
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "big.bin").write_bytes(b"x" * 10)
    os.symlink(tmp_path / "ext", tmp_path / "d" / "linked")
    files, links = hash_tree(tmp_path / "d", progress=False)
    assert files == {"a.txt": {"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "bytes": 3}}
    assert links == [{"path": "linked", "target": str(tmp_path / "ext")}]
    how = link_or_copy(tmp_path / "d" / "a.txt", tmp_path / "copy" / "a.txt")
    assert how in ("hardlink", "copy") and (tmp_path / "copy" / "a.txt").read_bytes() == b"abc"


def test_stage_cli(tmp_path, capsys):
    from pipeline_helpers import stage_command

    stage = stage_command("prepare")

    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"seed": 3, "data": {"synthetic": TINY_SYNTH}, "train": {"batch_size": 4}}))
    assert stage.main(["--params", str(params), "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and '"train_images": 12' in printed
    assert (tmp_path / "out" / "manifest.json").exists()
    params.write_text(json.dumps({"data": {"source": "recordio"}}))
    assert stage.main(["--params", str(params), "--out", str(tmp_path / "out2")]) == 2
    assert "data.train_rec" in capsys.readouterr().err
    params.write_text(json.dumps({"data": {"source": "folders", "train_folders": str(tmp_path / "none")}}))
    assert stage.main(["--params", str(params), "--out", str(tmp_path / "out3")]) == 2
    assert "data.train_folders" in capsys.readouterr().err
