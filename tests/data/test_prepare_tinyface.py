"""data.tinyface: a real TinyFace-style identification set ingested by prepare (align: none).

Inputs are written the way real tools write them (cv2.imencode JPEGs of TinyFace's tiny sizes, a
grayscale PNG, a 112x112 JPEG that must keep its bytes, a distractor in a sub-folder), not by our writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from marginlab.core.config import ConfigError, Params, validate_params
from marginlab.data.formats import CorruptImageError, DataFormatError, decode_image, read_identification_set
from marginlab.data.formats.image_header import is_jpeg
from marginlab.data.prepare import run_prepare
from marginlab.quality.sources import prepared_sources


def _jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def _two_tone(h: int, w: int, left: tuple[int, int, int], right: tuple[int, int, int]) -> np.ndarray:
    """A BGR image, left half one colour and right half another (what a resize must keep apart)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = left
    img[:, w // 2:] = right
    return img


def _tinyface(root: Path) -> dict[str, bytes]:
    files = {
        "Probe/1_1.jpg": _jpeg(_two_tone(20, 16, (0, 0, 255), (255, 0, 0))),  # TinyFace-sized: 16x20
        "Probe/2_1.png": cv2.imencode(".png", np.full((24, 24), 90, np.uint8))[1].tobytes(),  # grayscale PNG
        "Probe/3_1.jpg": _jpeg(_two_tone(30, 24, (0, 255, 0), (0, 0, 0))),
        "Gallery_Match/1_2.jpg": _jpeg(_two_tone(112, 112, (10, 20, 30), (200, 210, 220))),  # already 112: bytes kept
        "Gallery_Match/1_3.jpg": _jpeg(_two_tone(18, 14, (40, 40, 40), (90, 90, 90))),
        "Gallery_Match/2_2.jpg": _jpeg(_two_tone(22, 18, (60, 60, 60), (120, 120, 120))),
        "Gallery_Match/3_2.jpg": _jpeg(_two_tone(26, 20, (80, 80, 80), (160, 160, 160))),
        "Gallery_Distractor/d_0001.jpg": _jpeg(_two_tone(19, 15, (1, 2, 3), (4, 5, 6))),
        "Gallery_Distractor/more/other.jpeg": _jpeg(_two_tone(40, 30, (7, 8, 9), (10, 11, 12))),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _train_folders(root: Path) -> None:
    for c in range(2):
        (root / f"id{c}").mkdir(parents=True)
        for k in range(2):
            (root / f"id{c}" / f"{k}.jpg").write_bytes(_jpeg(np.full((112, 112, 3), 40 * c + 20 * k, np.uint8)))


def _params(tmp_path: Path, **data) -> Params:
    return Params.model_validate({"data": {"source": "folders", "name": "mine", "train_folders": str(tmp_path / "train"),
                                           "tinyface": str(tmp_path / "tinyface"), **data}})


@pytest.fixture
def sources(tmp_path):
    _train_folders(tmp_path / "train")
    return _tinyface(tmp_path / "tinyface")


def test_tinyface_is_conformed_and_keeps_its_identities(sources, tmp_path):
    manifest = run_prepare(_params(tmp_path), tmp_path / "prep", progress=False)
    out = tmp_path / "prep" / "tinyface"
    stored = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert stored == sorted(["Probe/1_1.jpg", "Probe/2_1.jpg", "Probe/3_1.jpg", "Gallery_Match/1_2.jpg", "Gallery_Match/1_3.jpg",
                             "Gallery_Match/2_2.jpg", "Gallery_Match/3_2.jpg", "Gallery_Distractor/d_0001.jpg",
                             "Gallery_Distractor/more/other.jpg"])
    for rel in stored:
        data = (out / rel).read_bytes()
        assert is_jpeg(data) and decode_image(data).shape == (112, 112, 3), rel
    assert (out / "Gallery_Match/1_2.jpg").read_bytes() == sources["Gallery_Match/1_2.jpg"]  # right size: bytes kept
    # the resize keeps the picture: the 16x20 probe's left half is red, its right half blue (RGB decode)
    probe = decode_image((out / "Probe/1_1.jpg").read_bytes()).astype(int)
    assert probe[56, 20].tolist() == pytest.approx([255, 0, 0], abs=12) and probe[56, 92].tolist() == pytest.approx([0, 0, 255], abs=12)
    grey = decode_image((out / "Probe/2_1.jpg").read_bytes())
    assert np.abs(grey.astype(int) - 90).max() <= 3
    # the evaluate stage reads the same identities from the prepared copy as from the source
    src_parts, prep_parts = read_identification_set(tmp_path / "tinyface"), read_identification_set(out)
    for part in ("Probe", "Gallery_Match", "Gallery_Distractor"):
        assert prep_parts[part][1].tolist() == src_parts[part][1].tolist(), part
    assert prep_parts["Probe"][1].tolist() == [1, 2, 3] and set(prep_parts["Gallery_Distractor"][1].tolist()) == {-1}
    counts = manifest["counts"]["tinyface"]
    assert {k: counts[k] for k in ("probes", "gallery", "distractors", "identities", "input_images", "dropped_images",
                                   "probes_without_match", "resized")} == {
        "probes": 3, "gallery": 4, "distractors": 2, "identities": 3, "input_images": 9, "dropped_images": 0,
        "probes_without_match": 0, "resized": 8}
    assert manifest["sources"]["tinyface"] == str(tmp_path / "tinyface")
    assert json.loads((tmp_path / "prep" / "manifest.json").read_text())["counts"]["tinyface"] == counts
    # the quality stage scores them too
    lengths = {s.split: s.length for s in prepared_sources(tmp_path / "prep") if s.split.startswith("tinyface:")}
    assert lengths == {"tinyface:Probe": 3, "tinyface:Gallery_Match": 4, "tinyface:Gallery_Distractor": 2}


def test_corrupt_gallery_image_is_named_or_drops_its_probe(sources, tmp_path):
    bad = tmp_path / "tinyface" / "Gallery_Match" / "3_2.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(CorruptImageError, match=r"data.tinyface: .*3_2.jpg"):
        run_prepare(_params(tmp_path), tmp_path / "prep", progress=False)
    assert not (tmp_path / "prep").exists()  # nothing half-written
    manifest = run_prepare(_params(tmp_path, skip_corrupt=True), tmp_path / "prep", progress=False)
    counts = manifest["counts"]["tinyface"]
    # identity 3 lost its only gallery image: its probe goes too (closed set), counted
    assert (counts["probes"], counts["gallery"], counts["probes_without_match"], counts["dropped_images"]) == (2, 3, 1, 2)
    assert not (tmp_path / "prep" / "tinyface" / "Probe" / "3_1.jpg").exists()
    assert [s["source"] for s in manifest["skipped"]] == [str(bad)]
    assert read_identification_set(tmp_path / "prep" / "tinyface")["Probe"][1].tolist() == [1, 2]


def test_every_gallery_image_dropped_is_a_clear_error(sources, tmp_path):
    for p in (tmp_path / "tinyface" / "Gallery_Match").iterdir():
        p.write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match=r"data.tinyface: no probe image is left with a matching gallery image"):
        run_prepare(_params(tmp_path, skip_corrupt=True), tmp_path / "prep", progress=False)


def test_two_files_on_one_prepared_name_and_bad_layouts_are_refused(sources, tmp_path):
    (tmp_path / "tinyface" / "Gallery_Distractor" / "d_0001.png").write_bytes(
        cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    with pytest.raises(DataFormatError, match=r"data.tinyface: .*d_0001.* would both be stored as Gallery_Distractor/d_0001.jpg"):
        run_prepare(_params(tmp_path), tmp_path / "prep", progress=False)
    (tmp_path / "tinyface" / "Gallery_Distractor" / "d_0001.png").unlink()
    (tmp_path / "tinyface" / "Probe" / "9_1.jpg").write_bytes(sources["Probe/1_1.jpg"])  # identity 9: no gallery match
    with pytest.raises(DataFormatError, match=r"data.tinyface: .*9_1.jpg: probe identity '9' has no image in Gallery_Match"):
        run_prepare(_params(tmp_path), tmp_path / "prep", progress=False)
    with pytest.raises(DataFormatError, match=r"data.tinyface: .*Probe.* not found"):
        run_prepare(_params(tmp_path, tinyface=str(tmp_path / "train")), tmp_path / "prep", progress=False)



def test_identities_1_and_01_are_refused_naming_both_files(sources, tmp_path):
    """Parsed as numbers they were merged; written two ways they may be two people or one: refused."""
    (tmp_path / "tinyface" / "Gallery_Match" / "01_5.jpg").write_bytes(sources["Gallery_Match/1_3.jpg"])
    with pytest.raises(DataFormatError, match=r"data.tinyface: .*identities '01' \(.*Gallery_Match/01_5.jpg\) and '1' "
                                              r"\(.*Probe/1_1.jpg\) are one number written two ways"):
        run_prepare(_params(tmp_path), tmp_path / "prep", progress=False)
    assert not (tmp_path / "prep").exists()


def test_a_30_digit_identity_is_a_name(sources, tmp_path):
    """Too long for int64 (it overflowed into numpy): the ids become names, numbered 0..K-1 in sorted order."""
    big = "123456789012345678901234567890"
    (tmp_path / "tinyface" / "Probe" / f"{big}_1.jpg").write_bytes(sources["Probe/3_1.jpg"])
    (tmp_path / "tinyface" / "Gallery_Match" / f"{big}_2.jpg").write_bytes(sources["Gallery_Match/3_2.jpg"])
    manifest = run_prepare(_params(tmp_path), tmp_path / "prep", progress=False)
    assert manifest["counts"]["tinyface"]["identities"] == 4
    src = read_identification_set(tmp_path / "tinyface")
    prep = read_identification_set(tmp_path / "prep" / "tinyface")  # what the evaluate stage reads
    for parts in (src, prep):
        # identities sorted: '1' -> 0, big -> 1, '2' -> 2, '3' -> 3 (files sort '123..._1' before '1_1')
        assert [p.stem for p in parts["Probe"][0]] == [f"{big}_1", "1_1", "2_1", "3_1"]
        assert parts["Probe"][1].tolist() == [1, 0, 2, 3] and parts["Gallery_Match"][1].tolist() == [1, 0, 0, 2, 3]
        assert parts["Probe"][1].dtype == np.int64

def test_tinyface_config_is_checked_up_front():
    with pytest.raises(ConfigError, match=r"data.tinyface names a real identification set, but data.source 'synthetic'"):
        validate_params({"data": {"tinyface": "data/tinyface/Testing_Set"}})
    assert validate_params({"data": {"source": "recordio", "train_rec": "x.rec", "tinyface": "t"}}).data.tinyface == "t"
