"""Prepare hardening (issue #11): one image size, full decode at ingest with the user's file named,
decoder warnings, the user's files left untouched, kill -9 leaving no workers or temporaries."""

from __future__ import annotations

import json
import re
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from prepare_inputs import TINY_SYNTH, tiny_params

from marginlab.data.formats import (
    CorruptImageError,
    DataFormatError,
    ImagePolicy,
    RecordIOError,
    VerificationBinError,
    conform_encoded,
    decode_image,
    decode_image_checked,
    encode_jpeg,
    encode_png,
    open_recordio,
    read_bin_encoded,
    square_resize,
    write_bin,
    write_recordio,
)
from marginlab.data.prepare import run_prepare
from marginlab.data.prepare.stale import _held_by_live_process, clean_stale_temps, lock_dir

REPO = Path(__file__).resolve().parents[2]


def _image(h, w, seed=0):
    """A smooth random colour image (H, W, 3) RGB."""
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


_EXTRANEOUS = re.compile(r"Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9")


def _with_extraneous_bytes(jpeg: bytes, garbage: bytes = bytes(range(1, 17))) -> bytes:
    """A valid JPEG with 16 bytes inserted before its end-of-image marker: libjpeg decodes it and warns
    'Corrupt JPEG data: N extraneous bytes before marker 0xd9' (N <= 16: the entropy decoder may have
    read a few of them ahead into its bit buffer)."""
    assert jpeg.endswith(b"\xff\xd9")
    return jpeg[:-2] + garbage + jpeg[-2:]


def _leftovers(parent: Path):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- square_resize (hand-checked)
def test_square_resize_center_crop_keeps_the_centre_columns():
    img = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6)  # value = 6 * row + column
    out = square_resize(img, 4, "center_crop")
    np.testing.assert_array_equal(out, img[:, 1:5])  # columns 1..4, one dropped on each side
    tall = np.arange(7 * 4, dtype=np.uint8).reshape(7, 4)
    np.testing.assert_array_equal(square_resize(tall, 4, "center_crop"), tall[1:5])  # odd excess: extra row at the bottom
    colour = np.stack([img, img + 100, img + 200], axis=-1)
    np.testing.assert_array_equal(square_resize(colour, 4), colour[:, 1:5])  # center_crop is the default


def test_square_resize_pad_puts_black_bars():
    img = np.full((4, 6, 3), 200, np.uint8)
    out = square_resize(img, 6, "pad")
    assert out.shape == (6, 6, 3)
    assert (out[0] == 0).all() and (out[5] == 0).all()  # one black row above and below
    assert (out[1:5] == 200).all()
    odd = square_resize(np.full((3, 6, 3), 200, np.uint8), 6, "pad")
    assert (odd[:1] == 0).all() and (odd[1:4] == 200).all() and (odd[4:] == 0).all()  # 1 row above, 2 below


def test_square_resize_already_right_size_is_returned_unchanged():
    img = _image(112, 112)
    before = img.copy()
    assert square_resize(img, 112, "center_crop") is img
    assert square_resize(img, 112, "pad") is img
    np.testing.assert_array_equal(img, before)


def test_square_resize_interpolation_area_when_shrinking_linear_when_enlarging():
    big = _image(250, 250)
    np.testing.assert_array_equal(square_resize(big, 112), cv2.resize(big, (112, 112), interpolation=cv2.INTER_AREA))
    small = _image(60, 80)  # crop to 60x60, then enlarge
    np.testing.assert_array_equal(square_resize(small, 112), cv2.resize(small[:, 10:70], (112, 112), interpolation=cv2.INTER_LINEAR))
    with pytest.raises(ValueError, match="mode must be one of"):
        square_resize(big, 112, "stretch")


def test_conform_encoded_keeps_right_size_bytes_and_resizes_others():
    policy = ImagePolicy(size=112, resize="center_crop")
    jpeg = encode_jpeg(_image(112, 112))
    same = conform_encoded(jpeg, policy, source="x")
    assert same.data == jpeg and not same.resized and not same.reencoded and same.warnings == ()
    png = encode_png(_image(112, 112))
    assert conform_encoded(png, policy, source="x").data == png  # RecordIO/.bin: any format kept at size
    as_jpeg = conform_encoded(png, policy, source="x", jpeg_only=True)  # identity folders store JPEG
    assert as_jpeg.data[:2] == b"\xff\xd8" and as_jpeg.reencoded and not as_jpeg.resized
    big = conform_encoded(encode_png(_image(160, 120)), policy, source="x")
    assert big.resized and big.shape == (160, 120) and big.data[:2] == b"\xff\xd8"
    assert decode_image(big.data).shape == (112, 112, 3)


# --------------------------------------------------------------------------- decoder warnings
def test_decoder_warning_for_extraneous_bytes_is_reported():
    jpeg = encode_jpeg(_image(112, 112))
    image, messages = decode_image_checked(jpeg)
    assert messages == []
    bad = _with_extraneous_bytes(jpeg)
    image2, messages = decode_image_checked(bad, source="b.jpg")
    np.testing.assert_array_equal(image2, image)  # it still decodes to the same pixels
    assert len(messages) == 1 and _EXTRANEOUS.fullmatch(messages[0]), messages
    # garbage between two header segments (after APP0, before the quantisation tables)
    app0_end = 4 + int.from_bytes(jpeg[4:6], "big")
    _, messages = decode_image_checked(jpeg[:app0_end] + b"\x11\x22" + jpeg[app0_end:])
    assert messages == ["Corrupt JPEG data: 2 extraneous bytes before marker 0xdb"]
    with pytest.raises(CorruptImageError, match="b.jpg"):
        decode_image_checked(b"\xff\xd8\xff\xe0 not a jpeg \xff\xd9", source="b.jpg")
    assert decode_image_checked(jpeg)[1] == []  # nothing carried over between calls


# --------------------------------------------------------------------------- item 3: mixed sizes
def _mixed_folders(root: Path) -> dict[str, bytes]:
    """Two identities with a 250x250 JPEG, a 112x112 JPEG crop, a 160x120 PNG and a 480x640 photo."""
    files = {
        "a/0_250.jpg": encode_jpeg(_image(250, 250, 1)),
        "a/1_112.jpg": encode_jpeg(_image(112, 112, 2)),
        "b/0_png.png": encode_png(_image(160, 120, 3)),
        "b/1_phone.jpg": encode_jpeg(_image(640, 480, 4)),
        "b/2_112.jpg": encode_jpeg(_image(112, 112, 5)),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_folders_of_mixed_sizes_become_one_size(tmp_path):
    files = _mixed_folders(tmp_path / "faces")
    m = run_prepare(tiny_params(source="folders", train_folders=str(tmp_path / "faces")), tmp_path / "p", progress=False)
    reader = open_recordio(tmp_path / "p" / "train.rec")
    shapes = {decode_image(reader[i][0]).shape for i in range(len(reader))}
    assert shapes == {(112, 112, 3)}
    assert reader[1][0] == files["a/1_112.jpg"] and reader[4][0] == files["b/2_112.jpg"]  # byte for byte
    ingest = m["counts"]["train_ingest"]
    assert (ingest["resized"], ingest["reencoded"]) == (3, 0)
    assert m["image_policy"]["image_size"] == 112 and m["image_policy"]["resize"] == "center_crop"
    assert "INTER_AREA" in m["image_policy"]["interpolation"]
    # the 250x250 image is the area-resized original (JPEG 95 of it)
    want = cv2.resize(decode_image(files["a/0_250.jpg"]), (112, 112), interpolation=cv2.INTER_AREA)
    assert np.abs(decode_image(reader[0][0]).astype(int) - want).mean() < 2.0
    assert (tmp_path / "p" / "samples.png").stat().st_size > 1000


def test_folders_pad_policy_and_other_size(tmp_path):
    root = tmp_path / "faces" / "a"
    root.mkdir(parents=True)
    (root / "wide.png").write_bytes(encode_png(np.full((40, 80, 3), 255, np.uint8)))
    m = run_prepare(tiny_params(source="folders", train_folders=str(tmp_path / "faces"), image_size=64, resize="pad"), tmp_path / "p", progress=False)
    img = decode_image(open_recordio(tmp_path / "p" / "train.rec")[0][0])
    assert img.shape == (64, 64, 3)
    assert img[:12].max() < 20 and img[-12:].max() < 20  # black bars above and below
    assert img[24:40].min() > 235  # the white image in the middle
    assert m["image_policy"] == {**m["image_policy"], "image_size": 64, "resize": "pad"}


def test_recordio_of_mixed_sizes_is_rewritten_once(tmp_path):
    src = tmp_path / "raw" / "train.rec"
    src.parent.mkdir()
    images = [encode_jpeg(_image(112, 112, 0)), encode_jpeg(_image(112, 112, 1)), encode_jpeg(_image(250, 250, 2)),
              encode_jpeg(_image(112, 112, 3)), encode_png(_image(120, 90, 4)), encode_jpeg(_image(112, 112, 5))]
    write_recordio(src, list(zip(images, [0, 0, 1, 1, 2, 2])))
    m = run_prepare(tiny_params(source="recordio", train_rec=str(src)), tmp_path / "p", progress=False)
    ingest = m["counts"]["train_ingest"]
    assert (ingest["ingest"], ingest["resized"], ingest["images"], ingest["classes"]) == ("rewritten", 2, 6, 3)
    reader = open_recordio(tmp_path / "p" / "train.rec")
    assert reader.labels.tolist() == [0, 0, 1, 1, 2, 2] and reader.num_classes == 3
    for i in (0, 1, 3, 5):
        assert reader[i][0] == images[i]  # unchanged records keep their bytes
    assert {decode_image(reader[i][0]).shape for i in range(6)} == {(112, 112, 3)}
    assert pd.read_parquet(tmp_path / "p" / "train_meta.parquet")["label"].tolist() == [0, 0, 1, 1, 2, 2]


def test_bin_of_mixed_sizes_is_rewritten_at_one_size(tmp_path):
    faces = tmp_path / "faces" / "a"
    faces.mkdir(parents=True)
    (faces / "0.jpg").write_bytes(encode_jpeg(_image(112, 112)))
    images = [encode_jpeg(_image(250, 250, 1)), encode_jpeg(_image(112, 112, 2)), encode_png(_image(112, 112, 3)), encode_png(_image(100, 130, 4))]
    write_bin(tmp_path / "lfw.bin", images, [True, False])
    m = run_prepare(tiny_params(source="folders", train_folders=str(tmp_path / "faces"), val_bins=[str(tmp_path / "lfw.bin")]), tmp_path / "p", progress=False)
    info = m["counts"]["verification"]["lfw"]
    assert (info["ingest"], info["resized"], info["pairs"]) == ("rewritten", 2, 2)
    got, issame = read_bin_encoded(tmp_path / "p" / "verification" / "lfw.bin")
    assert issame.tolist() == [True, False]
    assert got[1] == images[1] and got[2] == images[2]  # right-size images (PNG too) keep their bytes
    assert got[3][:2] == b"\xff\xd8"  # the resized PNG is stored as JPEG
    assert {decode_image(g).shape for g in got} == {(112, 112, 3)}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs")
def test_large_photo_is_decoded_one_at_a_time(tmp_path):
    """Four 6000x4000 photos: the peak memory of prepare grows by about one decoded photo, not four."""
    root = tmp_path / "faces" / "a"
    root.mkdir(parents=True)
    photo = cv2.resize(np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8), (4000, 6000), interpolation=cv2.INTER_LINEAR)
    for k in range(4):
        (root / f"{k}.jpg").write_bytes(encode_jpeg(np.roll(photo, k, axis=0), quality=90))
    del photo
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"data": {"source": "folders", "train_folders": str(tmp_path / "faces")}}))
    # the child resets its peak-RSS mark (VmHWM) after the imports, so only prepare's own peak counts
    script = (
        "import json, sys, time\n"
        "from marginlab.core.config import load_params\n"
        "from marginlab.data.prepare import run_prepare\n"
        "def kib(field):\n"
        "    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith(field))\n"
        "p = load_params(sys.argv[1])\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "base = kib('VmRSS')\n"
        "t = time.perf_counter(); m = run_prepare(p, sys.argv[2], progress=False); dt = time.perf_counter() - t\n"
        "print(json.dumps({'grew_mib': (kib('VmHWM') - base) / 1024, 'seconds': dt, 'resized': m['counts']['train_ingest']['resized']}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(params), str(tmp_path / "p")], capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    decoded_mib = 6000 * 4000 * 3 / 2**20  # 68.7 MiB per decoded photo
    assert result["resized"] == 4
    assert result["grew_mib"] < 3 * decoded_mib, result  # decoding holds about two copies; four photos would hold 4+
    print(f"prepare of 4 photos 6000x4000: {result['seconds']:.2f} s, peak RSS grew {result['grew_mib']:.0f} MiB")


# --------------------------------------------------------------------------- item 10: decode everything at prepare
def _rec_of_112(path: Path, n=10, labels=None, corrupt_at=None, with_header=True):
    images = [encode_jpeg(_image(112, 112, i)) for i in range(n)]
    if corrupt_at is not None:
        images[corrupt_at] = images[corrupt_at][:-200]  # truncated: no end-of-image marker
    labels = labels if labels is not None else [i // 2 for i in range(n)]
    write_recordio(path, list(zip(images, labels)), with_header=with_header)
    return images


def test_strict_prepare_decodes_every_record_and_names_the_users_file(tmp_path):
    src = tmp_path / "raw" / "train.rec"
    src.parent.mkdir()
    _rec_of_112(src, corrupt_at=6)  # well past the first images
    with pytest.raises(CorruptImageError) as info:
        run_prepare(tiny_params(source="recordio", train_rec=str(src)), tmp_path / "p", progress=False)
    msg = str(info.value)
    assert msg.startswith(f"data.train_rec: {src} record key 7 (position 6): truncated JPEG"), msg
    assert not (tmp_path / "p").exists() and _leftovers(tmp_path) == []
    m = run_prepare(tiny_params(source="recordio", train_rec=str(src), skip_corrupt=True), tmp_path / "p", progress=False)
    assert [(s["source"], s["key"]) for s in m["skipped"]] == [(str(src), 7)]
    assert m["counts"]["train_images"] == 9 and m["counts"]["train_ingest"]["ingest"] == "rewritten"


@pytest.mark.parametrize("with_header", [True, False])
def test_wrong_idx_offset_names_data_train_rec(tmp_path, with_header):
    src = tmp_path / "raw" / "train.rec"
    src.parent.mkdir()
    _rec_of_112(src, with_header=with_header)
    idx = src.with_suffix(".idx")
    lines = idx.read_text().splitlines()
    row = 5 if with_header else 4  # key 5 (header layout) / key 4 (headerless): the 5th image
    key, offset = lines[row].split("\t")
    lines[row] = f"{key}\t{int(offset) + 8}"
    idx.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordIOError) as info:
        run_prepare(tiny_params(source="recordio", train_rec=str(src)), tmp_path / "p", progress=False)
    msg = str(info.value)
    assert msg.startswith("data.train_rec: ") and str(src) in msg and f"key {key}" in msg and "magic" in msg, msg
    assert ".tmp" not in msg  # never the temporary copy


def test_folders_corrupt_image_names_data_train_folders(tmp_path):
    root = tmp_path / "faces" / "a"
    root.mkdir(parents=True)
    for k in range(3):
        (root / f"{k}.jpg").write_bytes(encode_jpeg(_image(112, 112, k)))
    (root / "2.jpg").write_bytes((root / "2.jpg").read_bytes()[:-300])
    with pytest.raises(CorruptImageError, match="^" + re.escape(f"data.train_folders: {root / '2.jpg'}: truncated JPEG")):
        run_prepare(tiny_params(source="folders", train_folders=str(tmp_path / "faces")), tmp_path / "p", progress=False)


def test_decoder_warnings_are_listed_in_the_manifest(tmp_path):
    good = encode_jpeg(_image(112, 112, 0))
    warned = _with_extraneous_bytes(encode_jpeg(_image(112, 112, 1)))
    src = tmp_path / "raw" / "train.rec"
    src.parent.mkdir()
    write_recordio(src, [(good, 0), (warned, 0), (good, 1)])
    write_bin(tmp_path / "raw" / "v.bin", [good, warned], [True])
    params = tiny_params(source="recordio", train_rec=str(src), val_bins=[str(tmp_path / "raw" / "v.bin")])
    m = run_prepare(params, tmp_path / "p", progress=False)
    message = decode_image_checked(warned)[1][0]
    assert _EXTRANEOUS.fullmatch(message)
    assert m["warnings"] == [
        {"source": str(src), "key": 2, "position": 1, "message": message},
        {"source": str(tmp_path / "raw" / "v.bin"), "image": 1, "message": message},
    ]
    assert m["counts"]["warnings"] == 2 and m["skipped"] == []
    # decodable: kept as it is, the RecordIO still linked unchanged
    assert m["counts"]["train_ingest"]["ingest"] in ("hardlink", "copy")
    assert open_recordio(tmp_path / "p" / "train.rec")[1][0] == warned
    root = tmp_path / "faces" / "a"
    root.mkdir(parents=True)
    (root / "w.jpg").write_bytes(warned)
    m = run_prepare(tiny_params(source="folders", train_folders=str(tmp_path / "faces")), tmp_path / "p2", progress=False)
    assert m["warnings"] == [{"source": str(root / "w.jpg"), "message": message}] and m["counts"]["warnings"] == 1


# --------------------------------------------------------------------------- item 5: empty .bin
def test_bin_with_zero_pairs_is_rejected_by_prepare(tmp_path):
    faces = tmp_path / "faces" / "a"
    faces.mkdir(parents=True)
    (faces / "0.jpg").write_bytes(encode_jpeg(_image(112, 112)))
    empty = tmp_path / "empty.bin"
    empty.write_bytes(__import__("pickle").dumps(([], [])))
    with pytest.raises(VerificationBinError, match="^" + re.escape(f"data.val_bins: {empty}: holds 0 pairs")) as info:
        run_prepare(tiny_params(source="folders", train_folders=str(tmp_path / "faces"), val_bins=[str(empty)]), tmp_path / "p", progress=False)
    assert isinstance(info.value, DataFormatError)
    assert not (tmp_path / "p").exists()


# --------------------------------------------------------------------------- item 9: the user's files
def test_prepare_never_modifies_the_users_files(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rec = raw / "train.rec"
    _rec_of_112(rec, n=4)
    write_bin(raw / "lfw.bin", [encode_jpeg(_image(112, 112, k)) for k in range(2)], [True])
    sources = [rec, rec.with_suffix(".idx"), raw / "lfw.bin"]
    for p in sources:
        os.chmod(p, 0o444)
    before = {p: (stat.S_IMODE(p.stat().st_mode), p.stat().st_mtime_ns, p.read_bytes()) for p in sources}
    params = tiny_params(source="recordio", train_rec=str(rec), val_bins=[str(raw / "lfw.bin")])
    for _ in range(2):  # the second run replaces (and deletes) the first output
        m = run_prepare(params, tmp_path / "p", progress=False)
        after = {p: (stat.S_IMODE(p.stat().st_mode), p.stat().st_mtime_ns, p.read_bytes()) for p in sources}
        assert after == before
    assert m["counts"]["train_ingest"]["ingest"] in ("hardlink", "copy")
    assert (tmp_path / "p" / "train.rec").read_bytes() == before[rec][2]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "p" / "manifest.json").stat().st_mode) == 0o666 & ~mask  # our own files


# --------------------------------------------------------------------------- item 11: kill -9
def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_kill_9_leaves_no_workers_and_the_rerun_cleans_up(tmp_path):
    synth = {**TINY_SYNTH, "train_identities": 20, "train_images_per_identity": 20}  # a pool that runs a few seconds
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"seed": 3, "data": {"synthetic": synth}}))
    out = tmp_path / "prepared"
    workers: list[int] = []
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "stages" / "prepare.py"), "--params", str(params), "--out", str(out), "--workers", "2", "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
            workers = _children(proc.pid)
            time.sleep(0.05)
        assert len(workers) >= 2, "the generator pool did not start"
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers), "worker processes outlived the killed prepare"
    finally:  # never leave a process of this test behind, whatever failed
        if proc.poll() is None:
            proc.kill()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    stale = [n for n in _leftovers(tmp_path) if n.startswith(".prepared.")]
    assert stale, "the killed run should have left its temporary output"
    # Every process that held the killed run's lock (including a pool worker started after the scan above)
    # dies with it; on a loaded machine that can take a moment after the parent is gone.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_held_by_live_process(tmp_path / n) for n in stale):
        time.sleep(0.05)
    assert not any(_held_by_live_process(tmp_path / n) for n in stale), "a process of the killed run still holds its lock"
    run_prepare(tiny_params(source="synthetic", synthetic=TINY_SYNTH), out, workers=1, progress=False)
    assert _leftovers(tmp_path) == [] and (out / "manifest.json").exists()


def test_clean_stale_temps_spares_live_and_foreign_directories(tmp_path):
    out = tmp_path / "prepared"
    live, dead = tmp_path / ".prepared.abcd1234.tmp", tmp_path / ".prepared.zz_9y8x7.tmp"
    foreign = [tmp_path / ".other.abcd1234.tmp", tmp_path / ".prepared.tmp", tmp_path / ".prepared.abc.tmp", tmp_path / "prepared.abcd1234.tmp"]
    for d in (live, dead, *foreign):
        d.mkdir()
        (d / "f").write_text("x")
    fd = lock_dir(live)  # a running prepare holds its temporary directory
    try:
        assert clean_stale_temps(out) == [dead.name]
        assert live.exists() and not dead.exists() and all(d.exists() for d in foreign)
    finally:
        os.close(fd)
    assert clean_stale_temps(out) == [live.name]
    (tmp_path / ".prepared.old").mkdir()
    assert clean_stale_temps(out) == [".prepared.old"]
