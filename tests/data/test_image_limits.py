"""data.max_image_pixels (issue #21 point 6) and the size checks of data.subset_index.

A small file may declare a huge image (a 0.9 MB PNG of 30000 x 30000 pixels decodes to 2.7 GB): the
size is read from the header and such an image is refused before ``cv2.imdecode`` runs; the tests
replace ``cv2.imdecode`` with a guard, so a decode of a refused image fails the test instead of taking
the memory.  A subset index that is a directory or a multi-GB file is refused before it is read.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from marginlab.core.config import DataConfig, Params, validate_params
from marginlab.data.align.detector import Detections
from marginlab.data.formats import (
    CorruptImageError,
    ImagePolicy,
    conform_encoded,
    decode_image_checked,
    encode_jpeg,
    encode_png,
    open_recordio,
    read_bin_encoded,
    write_bin,
    write_recordio,
)
from marginlab.data.formats.errors import ImageTooLargeError
from marginlab.data.formats.image_header import image_header_size
from marginlab.data.formats.images import DEFAULT_MAX_IMAGE_PIXELS, decode_image
from marginlab.data.prepare import run_prepare
from marginlab.data.prepare.subset import (
    MAX_INDEX_BYTES,
    SubsetIndexError,
    read_subset_index,
)

REPO = Path(__file__).resolve().parents[2]
_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION


# --------------------------------------------------------------------------- crafted headers
def _png(width: int, height: int, rows: int | None = None) -> bytes:
    """An 8-bit RGB PNG declaring ``width`` x ``height``; only ``rows`` rows of (black) pixel data are stored."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    scanlines = (b"\x00" + bytes(3 * width)) * (height if rows is None else rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(scanlines)) + chunk(b"IEND", b"")


def _jpeg(width: int, height: int) -> bytes:
    """A real 16x16 JPEG whose frame header (SOF0) is patched to declare ``width`` x ``height``."""
    data = bytearray(encode_jpeg(np.full((16, 16, 3), 128, np.uint8)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


def _patched(ext: str, patch, params: tuple[int, ...] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, _image(np.random.default_rng(0), 24, 32), list(params))
    assert ok
    data = bytearray(buf.tobytes())
    patch(data)
    return bytes(data)


def _webp_lossy(data: bytearray) -> None:
    assert data[12:16] == b"VP8 "
    struct.pack_into("<HH", data, 26, 16383, 16383)


BOMBS = {  # name -> (bytes, declared width, declared height)
    "png": (_png(30000, 30000, rows=1), 30000, 30000),
    "jpeg": (_jpeg(60000, 60000), 60000, 60000),
    "webp": (_patched(".webp", _webp_lossy, (cv2.IMWRITE_WEBP_QUALITY, 80)), 16383, 16383),
    "bmp (PIL header)": (_patched(".bmp", lambda d: struct.pack_into("<ii", d, 18, 20000, 20000)), 20000, 20000),
    "gif (PIL header)": (_patched(".gif", lambda d: struct.pack_into("<HH", d, 6, 60000, 60000)), 60000, 60000),
    "pgm": (b"P5\n# a comment\n40000 40000\n255\n" + bytes(64), 40000, 40000),
}


@pytest.fixture
def no_decode(monkeypatch):
    """cv2.imdecode replaced: decoding any of ``refused`` (a list the test fills) fails the test."""
    refused: list[bytes] = []
    real = cv2.imdecode

    def guarded(buf, flags):
        if bytes(np.asarray(buf).reshape(-1)) in refused:
            raise AssertionError("cv2.imdecode was called on an image that must be refused before decoding")
        return real(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", guarded)
    return refused


# --------------------------------------------------------------------------- refused before decoding
@pytest.mark.parametrize("name", list(BOMBS))
def test_huge_declared_size_is_refused_before_decoding(name, no_decode):
    data, width, height = BOMBS[name]
    no_decode.append(data)
    pil_limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning from PIL: our check decides
        assert image_header_size(data) == (width, height)
        for decode in (decode_image, decode_image_checked):
            with pytest.raises(ImageTooLargeError) as err:
                decode(data, source=f"faces/{name}.img")
            msg = str(err.value)
            assert msg.startswith(f"faces/{name}.img: ")
            assert f"{width} x {height}" in msg and f"{width * height:,}" in msg
            assert f"data.max_image_pixels = {DEFAULT_MAX_IMAGE_PIXELS:,}" in msg
        with pytest.raises(CorruptImageError, match="data.max_image_pixels"):  # skip_corrupt catches this class
            conform_encoded(data, ImagePolicy(size=16), source="x")
    assert Image.MAX_IMAGE_PIXELS == pil_limit  # PIL's own limit is restored


def test_limit_default_and_boundary():
    assert DataConfig().max_image_pixels == DEFAULT_MAX_IMAGE_PIXELS == ImagePolicy().max_pixels
    png = _png(40, 30)  # the crafted PNGs are real ones (correct CRCs): this one decodes
    assert decode_image(png, max_pixels=1200).shape == (30, 40, 3)  # exactly at the limit: decoded
    with pytest.raises(ImageTooLargeError, match=r"40 x 30 = 1,200 pixels.*data\.max_image_pixels = 1,199"):
        decode_image(png, max_pixels=1199)
    assert conform_encoded(png, ImagePolicy(size=30, max_pixels=1200), source="x").shape == (30, 40)
    with pytest.raises(ImageTooLargeError):
        conform_encoded(png, ImagePolicy(size=30, max_pixels=1199), source="x")


def test_jpeg_size_comes_from_the_frame_header_not_from_other_segments():
    """Bytes FF C0 inside an APP1 segment (an EXIF thumbnail) and stray bytes before a marker are skipped,
    as libjpeg skips them; the frame header gives the size."""
    jpeg = encode_jpeg(_image(np.random.default_rng(2), 24, 32))
    fake_sof = b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03" + bytes(9)
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(fake_sof)) + b"Exif\x00\x00" + fake_sof
    sof = jpeg.index(b"\xff\xc0")
    data = jpeg[:2] + app1 + jpeg[2:sof] + b"\x00\x00" + jpeg[sof:]
    assert image_header_size(data) == (32, 24)
    assert decode_image(data, max_pixels=32 * 24).shape == (24, 32, 3)
    with pytest.raises(ImageTooLargeError, match="32 x 24"):
        decode_image(data, max_pixels=32 * 24 - 1)


FORMATS = [".png", ".jpg", ".bmp", ".webp", ".tiff", ".gif", ".ppm", ".jp2", ".sr", ".avif", ".pam", ".pfm", ".hdr"]


@pytest.mark.parametrize("ext", FORMATS)
def test_images_under_the_limit_decode_as_before(ext):
    img = _image(np.random.default_rng(3), 48, 64)
    if ext in (".pfm", ".hdr"):
        img = img.astype(np.float32) / 255
    try:
        ok, buf = cv2.imencode(ext, img)
    except cv2.error:
        ok = False
    if not ok:
        pytest.skip(f"this OpenCV build does not write {ext}")
    data = buf.tobytes()
    assert image_header_size(data) == (64, 48)
    assert np.array_equal(decode_image(data), cv2.imdecode(buf, _FLAGS))
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=64 * 48 - 1)


def test_bytes_without_a_readable_header_are_not_decoded(no_decode):
    data = b"GIF89a\x10"  # a GIF signature, cut inside the header
    no_decode.append(data)
    with pytest.raises(CorruptImageError, match=r"x.gif: could not decode 7 bytes as an image .*no image header"):
        decode_image(data, source="x.gif")


# --------------------------------------------------------------------------- prepare honours data.max_image_pixels
def _folders(root: Path, big: bytes) -> Path:
    rng = np.random.default_rng(4)
    for c in range(3):
        d = root / f"person_{c}"
        d.mkdir(parents=True)
        for k in range(5):
            (d / f"{k}.jpg").write_bytes(encode_jpeg(_image(rng, 40, 40)))  # 1,600 pixels
    (root / "person_1" / "big.png").write_bytes(big)
    return root


def _params(**data) -> Params:
    data.setdefault("image_size", 16)
    return validate_params({"seed": 1, "data": data}, source="test")


def test_prepare_folders_refuses_or_skips_an_image_over_the_params_limit(tmp_path, no_decode):
    big = encode_png(_image(np.random.default_rng(5), 100, 100))  # 10,000 pixels: a normal image, over 5,000
    no_decode.append(big)
    root = _folders(tmp_path / "faces", big)
    with pytest.raises(ImageTooLargeError, match=r"^data\.train_folders: .*person_1/big\.png: .*100 x 100 .*data\.max_image_pixels = 5,000"):
        run_prepare(_params(source="folders", train_folders=str(root), max_image_pixels=5000), tmp_path / "p1", progress=False)
    assert not (tmp_path / "p1").exists()
    m = run_prepare(_params(source="folders", train_folders=str(root), max_image_pixels=5000, skip_corrupt=True), tmp_path / "p2", progress=False)
    assert m["counts"]["train_images"] == 15
    assert [Path(s["source"]).name for s in m["skipped"]] == ["big.png"]
    assert "data.max_image_pixels" in m["skipped"][0]["reason"]
    assert m["image_policy"]["max_image_pixels"] == 5000
    no_decode.clear()  # under the default limit the same image is decoded and kept
    assert run_prepare(_params(source="folders", train_folders=str(root)), tmp_path / "p3", progress=False)["counts"]["train_images"] == 16


def test_prepare_bin_and_recordio_count_skipped_large_images(tmp_path, no_decode):
    rng = np.random.default_rng(6)
    big = encode_jpeg(_image(rng, 90, 90))
    no_decode.append(big)
    images = [encode_jpeg(_image(rng, 40, 40)) for _ in range(8)]
    images[3] = big  # pair 1
    write_bin(tmp_path / "v.bin", images, np.arange(4) % 2 == 0)
    samples = [(encode_jpeg(_image(rng, 40, 40)), c) for c in range(3) for _ in range(3)]
    samples[4] = (big, samples[4][1])  # image key 5
    write_recordio(tmp_path / "t.rec", samples)
    kw = {"source": "recordio", "train_rec": str(tmp_path / "t.rec"), "val_bins": [str(tmp_path / "v.bin")], "max_image_pixels": 5000}
    with pytest.raises(ImageTooLargeError, match=r"^data\.train_rec: .*t\.rec record key 5 \(position 4\): .*90 x 90"):
        run_prepare(_params(**kw), tmp_path / "p1", progress=False)
    m = run_prepare(_params(**kw, skip_corrupt=True), tmp_path / "p2", progress=False)
    skipped = {(Path(s["source"]).name, s.get("key", s.get("image"))) for s in m["skipped"]}
    assert skipped == {("t.rec", 5), ("v.bin", 3)}
    assert all("data.max_image_pixels" in s["reason"] for s in m["skipped"])
    assert m["counts"]["train_images"] == 8 and m["counts"]["verification"]["v"]["pairs"] == 3
    assert len(read_bin_encoded(tmp_path / "p2" / "verification" / "v.bin")[0]) == 6
    with open_recordio(tmp_path / "p2" / "train.rec") as reader:
        assert len(reader) == 8


def test_stage_prints_one_error_line_and_exits_2(tmp_path, capsys, no_decode):
    big = encode_png(_image(np.random.default_rng(7), 100, 100))
    no_decode.append(big)
    root = _folders(tmp_path / "faces", big)
    from pipeline_helpers import stage_command

    stage = stage_command("prepare")
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"data": {"source": "folders", "train_folders": str(root), "image_size": 16, "max_image_pixels": 5000}}))
    assert stage.main(["--params", str(params), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data.train_folders: ") and "big.png" in err[0]
    assert "data.max_image_pixels" in err[0] and not (tmp_path / "out").exists()


class _NoFaceDetector:
    """Stands in for MTCNN: finds nothing (``no_face: center_crop`` keeps every decodable photo)."""

    batch_size = 4

    def settings(self) -> dict:
        return {"detector": "none"}

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        return image[:8, :8], 1.0

    def detect_prepared(self, prepared) -> list[Detections]:
        return [Detections.empty() for _ in prepared]


def test_align_detect_refusal_is_not_cached(tmp_path, monkeypatch, no_decode):
    """data.align detect: a photo over the limit is refused before the detection cache, so a later run
    with a larger limit decodes it (a cached refusal would keep it out)."""
    monkeypatch.setattr("marginlab.data.prepare.ingest_aligned.make_detector", lambda params: _NoFaceDetector())
    big = encode_png(_image(np.random.default_rng(8), 100, 100))
    no_decode.append(big)
    root = _folders(tmp_path / "faces", big)

    def params(limit: int, skip: bool) -> Params:
        return Params.model_validate({"data": {
            "source": "folders", "name": "x", "train_folders": str(root), "align": "detect", "image_size": 16,
            "max_image_pixels": limit, "skip_corrupt": skip,
            "alignment": {"cache_dir": str(tmp_path / "cache"), "device": "cpu", "no_face": "center_crop"}}})

    with pytest.raises(CorruptImageError, match=r"^data\.train_folders: .*big\.png: .*data\.max_image_pixels = 5,000"):
        run_prepare(params(5000, False), tmp_path / "p1", progress=False)
    m = run_prepare(params(5000, True), tmp_path / "p2", progress=False)
    assert m["alignment"]["per_set"]["train"]["statuses"]["corrupt"] == 1
    assert [Path(s["source"]).name for s in m["skipped"]] == ["big.png"]
    no_decode.clear()
    m = run_prepare(params(20000, False), tmp_path / "p3", progress=False)
    assert m["counts"]["train_images"] == 16 and m["skipped"] == []


# --------------------------------------------------------------------------- data.subset_index
def test_subset_index_directory_is_refused(tmp_path):
    folder = tmp_path / "index.txt"
    folder.mkdir()
    with pytest.raises(SubsetIndexError, match=r"^data\.subset_index: .*index\.txt is a directory, expected a text file of indices"):
        read_subset_index(folder)
    root = _folders(tmp_path / "faces", encode_jpeg(_image(np.random.default_rng(9), 40, 40)))
    with pytest.raises(SubsetIndexError, match="is a directory"):
        run_prepare(_params(source="folders", train_folders=str(root), subset_index=str(folder)), tmp_path / "p", progress=False)
    assert not (tmp_path / "p").exists()


def test_subset_index_huge_file_is_refused_without_reading_it(tmp_path, monkeypatch):
    big = tmp_path / "index.txt"
    with big.open("wb") as f:
        os.truncate(f.fileno(), 2 * 2**30)  # 2 GiB, sparse: nothing is written
    real_open, real_read_bytes = Path.open, Path.read_bytes

    def no_read(name):
        def guard(self, *args, **kwargs):
            if self == big:
                raise AssertionError(f"the index file was read ({name})")
            return (real_open if name == "open" else real_read_bytes)(self, *args, **kwargs)
        return guard

    monkeypatch.setattr(Path, "open", no_read("open"))
    monkeypatch.setattr(Path, "read_bytes", no_read("read_bytes"))
    with pytest.raises(SubsetIndexError) as err:
        read_subset_index(big)
    msg = str(err.value)
    assert msg.startswith(f"data.subset_index: {big} is 2,147,483,648 bytes, more than the {MAX_INDEX_BYTES:,}")
    if Path("/dev/zero").exists():  # an endless device, not a file
        with pytest.raises(SubsetIndexError, match="/dev/zero is not a regular file"):
            read_subset_index("/dev/zero")
