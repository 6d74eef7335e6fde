"""The detection cache is data from disk (issue #21 point 5): a poisoned, damaged or planted part is
never trusted, never unpickled, its images are detected again and the rejections are counted.

A fake detector (one face per image, placed from the image's size) keeps these tests fast; one test
runs the real MTCNN to show that its honest output for faces cut by the border is accepted.
"""

from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hostile import RunsTouch

from marginlab.core.config import Params
from marginlab.data.align import Detections, Detector, detect_all
from marginlab.data.align.policy import aligned_crop
from marginlab.data.formats import encode_jpeg, open_recordio
from marginlab.data.formats.five_point_alignment import arcface_template
from marginlab.data.formats.images import decode_image
from marginlab.data.prepare import run_prepare
from marginlab.data.scenes import render_scene
from marginlab.core.io import OutputWriteError
from marginlab.core.ownership import ALIGN_CACHE_MARKER

SCHEMA = pa.schema([
    ("sha256", pa.string()), ("height", pa.int64()), ("width", pa.int64()), ("error", pa.string()),
    ("boxes", pa.list_(pa.float64())), ("scores", pa.list_(pa.float64())), ("landmarks", pa.list_(pa.float64())),
])
SIZES = [(40, 56), (48, 48), (64, 40), (32, 72)]  # (height, width) of the test images: one fake face each
BROKEN = b"\xff\xd8\xff\xe0 not really a jpeg"


def fake_face(h: int, w: int) -> Detections:
    """The ArcFace template drawn into the central 60 % of the image: landmarks well inside it."""
    x0, y0, side = 0.2 * w, 0.5 * h - 0.3 * w, 0.6 * w
    lms = arcface_template(112) * (side / 112) + np.array([x0, y0])
    return Detections(np.array([[x0, y0, x0 + side, y0 + side]]), np.array([0.99]), lms[None])


class FakeDetector:
    batch_size = 4

    def __init__(self):
        self.seen: list[tuple[int, int]] = []  # (h, w) of every image detected

    def settings(self) -> dict:
        return {"detector": "fake", "version": 1}

    def prepare(self, image):
        return image, 1.0

    def detect_prepared(self, prepared):
        self.seen.extend(img.shape[:2] for img, _ in prepared)
        return [fake_face(*img.shape[:2]) for img, _ in prepared]


def _images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    blobs = [encode_jpeg(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in SIZES] + [BROKEN]
    return {hashlib.sha256(b).hexdigest(): b for b in blobs}


def _run(images: dict[str, bytes], cache, detector=None):
    detector = detector or FakeDetector()
    found, stats = detect_all(list(images), lambda k: (images[k], k[:8]), make_detector=lambda: detector,
                              cache_dir=cache, chunk_size=8, progress=False)
    return found, stats, detector


def _parts(cache) -> list:
    return sorted(cache.glob("*/part-*.parquet"))


def _rewrite(part, edit) -> None:
    """Apply ``edit(row)`` to every row of ``part`` (rows as dicts) and write it back with plain types."""
    rows = pq.read_table(part).to_pylist()
    for r in rows:
        edit(r)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), part)


def _same(a: Detections, b: Detections) -> bool:
    return all(np.array_equal(x, y) for x, y in ((a.boxes, b.boxes), (a.scores, b.scores), (a.landmarks, b.landmarks)))


# --------------------------------------------------------------------------- poisoned entries
def _shift(dx):
    def edit(r):
        r["boxes"] = [v + dx if i % 2 == 0 else v for i, v in enumerate(r["boxes"])]
        r["landmarks"] = [v + dx if i % 2 == 0 else v for i, v in enumerate(r["landmarks"])]
    return edit


def _set(**values):
    return lambda r: r.update(values)


def _at(column, i, value):
    def edit(r):
        r[column] = list(r[column])
        r[column][i] = value
    return edit


POISONS = {
    # a consistent face ten image widths to the right: the old cache gave an all-black "ok" crop
    "face_far_outside": _shift(560.0),
    "landmarks_far_outside": lambda r: r.update(landmarks=[v + 500.0 for v in r["landmarks"]]),
    "landmarks_nan": _at("landmarks", 3, float("nan")),
    "box_inf": _at("boxes", 2, float("inf")),
    "score_negative": _set(scores=[-0.5]),
    "score_above_one": _set(scores=[1.5]),
    "boxes_wrong_length": lambda r: r.update(boxes=r["boxes"][:3]),
    "landmarks_wrong_length": lambda r: r.update(landmarks=r["landmarks"][:8]),
    "scores_null": _set(scores=None),
    "height_wrong": lambda r: r.update(height=r["height"] + 8),  # landmarks still inside the recorded size
    "height_width_swapped": lambda r: r.update(height=r["width"], width=r["height"]),
    "height_negative": _set(height=-40),
    "decodable_recorded_as_corrupt": _set(height=0, width=0, error="planted", boxes=[], scores=[], landmarks=[]),
    "sha256_not_hex": _set(sha256="z" * 64),
}


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_poisoned_entry_is_rejected_counted_and_detected_again(poison, tmp_path, caplog):
    images = _images()
    target = next(k for k, b in images.items() if decode_image(b).shape[:2] == (40, 56))
    fresh, stats, _ = _run(images, tmp_path / "c")
    assert stats["detected"] == 5
    for part in _parts(tmp_path / "c"):
        _rewrite(part, lambda r: POISONS[poison](r) if r["sha256"] == target else None)
    again, stats, det = _run(images, tmp_path / "c")
    assert det.seen == [(40, 56)]  # only the poisoned image was detected again
    for k in images:
        assert (again[k].height, again[k].width, again[k].error) == (fresh[k].height, fresh[k].width, fresh[k].error)
        assert _same(again[k].detections, fresh[k].detections)
    assert (stats["rejected"], stats["rejected_parts"], stats["detected"], stats["cached"]) == (1, 0, 1, 4)
    assert any(p.name in m and "detected again" in m for p in _parts(tmp_path / "c") for m in caplog.messages)
    _, stats, det = _run(images, tmp_path / "c")  # the good entry written now is used from here on
    assert (stats["detected"], det.seen) == (0, [])


def test_corrupt_image_recorded_with_a_face_is_detected_again(tmp_path):
    images = _images()
    broken = hashlib.sha256(BROKEN).hexdigest()
    fresh, _, _ = _run(images, tmp_path / "c")
    face = fake_face(40, 40)
    poison = _set(height=40, width=40, error=None, boxes=face.boxes.ravel().tolist(), scores=[0.99],
                  landmarks=face.landmarks.ravel().tolist())
    for part in _parts(tmp_path / "c"):
        _rewrite(part, lambda r: poison(r) if r["sha256"] == broken else None)
    again, stats, _ = _run(images, tmp_path / "c")
    assert again[broken].error == fresh[broken].error and len(again[broken].detections) == 0
    assert (stats["rejected"], stats["detected"]) == (1, 1)


def test_poisoned_cache_gives_the_right_crops_in_prepare(tmp_path, monkeypatch):
    """End to end: a cache whose faces all lie far outside their photos is rejected entry by entry, and
    the prepared crops are those of a fresh detection; the count is in the manifest."""
    import marginlab.data.prepare.ingest_aligned as ingest

    monkeypatch.setattr(ingest, "make_detector", lambda params: FakeDetector())
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        for i, (h, w) in enumerate(SIZES[:2]):
            (tmp_path / "faces" / c).mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            (tmp_path / "faces" / c / f"{i}.jpg").write_bytes(encode_jpeg(img))
    params = Params.model_validate({"data": {
        "source": "folders", "name": "x", "train_folders": str(tmp_path / "faces"), "align": "detect", "image_size": 32,
        "alignment": {"cache_dir": str(tmp_path / "cache"), "device": "cpu", "chunk_size": 8}}})

    def crops(out):
        with open_recordio(out / "train.rec") as reader:
            return [decode_image(reader[i][0]) for i in range(len(reader))]

    first = run_prepare(params, tmp_path / "p1", progress=False)
    for part in _parts(tmp_path / "cache"):
        _rewrite(part, _shift(1000.0))
    second = run_prepare(params, tmp_path / "p2", progress=False)
    good, now = crops(tmp_path / "p1"), crops(tmp_path / "p2")
    assert len(good) == len(now) == 4
    for a, b in zip(good, now):
        assert b.mean() > 20  # not the black crop of a face outside the photo
        np.testing.assert_array_equal(a, b)
    table = pd.read_parquet(tmp_path / "p2" / "alignment.parquet")
    assert (table["status"] == "ok").all()
    assert first["alignment"]["cache"]["rejected"] == 0
    assert second["alignment"]["cache"]["rejected"] == 4 and second["alignment"]["cache"]["detected"] == 4
    assert json.loads((tmp_path / "p2" / "manifest.json").read_text())["alignment"]["cache"]["rejected"] == 4


# --------------------------------------------------------------------------- foreign and damaged parts
def _plant(folder, columns: dict, schema=None, name="part-0000000000000000.parquet"):
    pq.write_table(pa.table(columns, schema=schema), folder / name)


PARTS = {
    "missing_columns": lambda k: {"sha256": [k], "height": [40], "width": [56]},
    "extra_column": lambda k: {**_good_row(k), "note": ["x"]},
    "boxes_as_strings": lambda k: {**_good_row(k), "boxes": [["1", "2", "3", "4"]]},
    "height_as_float": lambda k: {**_good_row(k), "height": [40.0]},
}


def _good_row(key: str) -> dict:
    f = fake_face(40, 56)
    return {"sha256": [key], "height": [40], "width": [56], "error": [None], "boxes": [f.boxes.ravel().tolist()],
            "scores": [[0.5]], "landmarks": [f.landmarks.ravel().tolist()]}


@pytest.mark.parametrize("kind", sorted(PARTS) + ["truncated", "not_parquet", "huge"])
def test_a_foreign_or_damaged_part_is_not_read_and_its_images_are_detected_again(kind, tmp_path, caplog):
    images = _images()
    target = next(k for k, b in images.items() if b != BROKEN and decode_image(b).shape[:2] == (40, 56))
    _, _, _ = _run(images, tmp_path / "c")  # creates the fingerprint folder
    folder = _parts(tmp_path / "c")[0].parent
    for part in _parts(tmp_path / "c"):
        part.unlink()
    if kind in PARTS:
        _plant(folder, PARTS[kind](target))
    else:
        _plant(folder, _good_row(target), schema=SCHEMA)
        part = folder / "part-0000000000000000.parquet"
        if kind == "huge":  # a sparse 2 GiB part: refused by its size, never read into memory
            with open(part, "r+b") as fh:
                fh.truncate(2 << 30)
        else:
            part.write_bytes(part.read_bytes()[:-20] if kind == "truncated" else b"PAR1 nothing of the kind")
    found, stats, det = _run(images, tmp_path / "c")
    assert _same(found[target].detections, fake_face(40, 56)) and len(det.seen) == 4  # + the broken image
    assert (stats["rejected_parts"], stats["detected"], stats["cached"]) == (1, 5, 0)
    assert any("part-0000000000000000.parquet is not used" in m for m in caplog.messages)


def test_parts_written_by_the_previous_pandas_writer_are_still_used(tmp_path):
    """Caches written before this check: pandas types (an all-None error column is ``null``, all-empty
    lists are ``list<null>``) are accepted, so existing caches are not detected again."""
    images = _images()
    by_size = {decode_image(b).shape[:2]: k for k, b in images.items() if b != BROKEN}
    broken = hashlib.sha256(BROKEN).hexdigest()
    _run({}, tmp_path / "c")  # the fingerprint folder
    folder = next((tmp_path / "c").glob("*/settings.json")).parent
    face = fake_face(40, 56)
    pd.DataFrame({"sha256": [by_size[(40, 56)], broken], "height": [40, 0], "width": [56, 0],
                  "error": pd.Series([None, "truncated"], dtype="object"),
                  "boxes": [face.boxes.ravel().tolist(), []], "scores": [[0.99], []],
                  "landmarks": [face.landmarks.ravel().tolist(), []]}).to_parquet(folder / "part-a.parquet", index=False)
    pd.DataFrame({"sha256": [by_size[(48, 48)]], "height": [48], "width": [48], "error": pd.Series([None], dtype="object"),
                  "boxes": [[]], "scores": [[]], "landmarks": [[]]}).to_parquet(folder / "part-b.parquet", index=False)
    assert pa.types.is_null(pq.read_schema(folder / "part-b.parquet").field("error").type)
    found, stats, det = _run(images, tmp_path / "c")
    assert (stats["cached"], stats["rejected"], stats["rejected_parts"]) == (3, 0, 0)
    assert sorted(det.seen) == [(32, 72), (64, 40)]
    assert len(found[by_size[(48, 48)]].detections) == 0 and _same(found[by_size[(40, 56)]].detections, face)
    assert found[broken].error.endswith("no end-of-image marker FF D9 at the end)")  # the decoder's message, not the cache's


class Pickled(pa.ExtensionType):
    """What pyarrow < 14's ``arrow.py_extension_type`` did (any library may register such a type)."""

    def __init__(self, storage, payload=b""):
        self.payload = payload
        super().__init__(storage, "arrow.py_extension_type")

    def __arrow_ext_serialize__(self):
        return self.payload

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        pickle.loads(serialized)
        return cls(storage_type, serialized)


@pytest.fixture
def pickling_extension_registered():
    pa.register_extension_type(Pickled(pa.list_(pa.float64())))
    yield
    pa.unregister_extension_type("arrow.py_extension_type")


@pytest.mark.parametrize("where", ["column", "list_item"])
def test_a_part_declaring_a_pickled_extension_type_is_never_unpickled(where, tmp_path, caplog, pickling_extension_registered):
    images = _images()
    target = next(k for k, b in images.items() if b != BROKEN and decode_image(b).shape[:2] == (40, 56))
    _run(images, tmp_path / "c")
    folder = _parts(tmp_path / "c")[0].parent
    for part in _parts(tmp_path / "c"):
        part.unlink()
    marker = tmp_path / "unpickled"
    meta = {b"ARROW:extension:name": b"arrow.py_extension_type", b"ARROW:extension:metadata": pickle.dumps(RunsTouch(marker))}
    boxes = pa.field("boxes", pa.list_(pa.float64()), metadata=meta) if where == "column" else \
        pa.field("boxes", pa.list_(pa.field("element", pa.float64(), metadata=meta)))
    schema = pa.schema([boxes if f.name == "boxes" else f for f in SCHEMA])
    _plant(folder, _good_row(target), schema=schema)
    pq.read_schema(folder / "part-0000000000000000.parquet")  # the planted part is armed: even a schema read unpickles
    assert marker.exists()
    marker.unlink()
    found, stats, _ = _run(images, tmp_path / "c")
    assert not marker.exists()
    assert _same(found[target].detections, fake_face(40, 56))
    assert (stats["rejected_parts"], stats["detected"]) == (1, 5)
    assert any("extension type" in m for m in caplog.messages)


# --------------------------------------------------------------------------- the folder itself
def test_the_cache_folder_gets_its_ownership_marker(tmp_path):
    _run(_images(), tmp_path / "c")
    assert (tmp_path / "c" / ALIGN_CACHE_MARKER).is_file()


def test_an_unwritable_cache_folder_is_a_write_error(tmp_path):
    (tmp_path / "c").write_text("a file, not a folder")
    with pytest.raises(OutputWriteError, match="cannot write"):
        _run(_images(), tmp_path / "c")


# --------------------------------------------------------------------------- honest MTCNN output
def test_real_mtcnn_faces_cut_by_the_border_are_kept(tmp_path):
    """MTCNN keeps faces cut by the photo's border with landmarks outside it: the checks accept them
    (a cache entry rejected on every run would be detected again on every run)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        detector = Detector(device="cpu")
        images, outside = {}, []
        for i in (3, 23):
            scene = render_scene(3, i, 0, canvas=(200, 200), face_px=(100, 140), max_rotation=20, clutter=4)
            lm = scene.landmarks
            cut = np.ascontiguousarray(scene.image[: int(lm[:, 1].max() - 0.3 * np.ptp(lm[:, 1]))])  # chin cut off
            blob = encode_jpeg(cut)
            images[hashlib.sha256(blob).hexdigest()] = blob
        found, stats, _ = _run(images, tmp_path / "c", detector)
        for k, entry in found.items():
            ys = entry.detections.landmarks[entry.detections.scores >= 0.9][..., 1]
            outside.append(float(ys.max() - entry.height) if ys.size else 0.0)
        assert max(outside) > 10  # some landmark lies more than 10 px below the photo
        again, stats, _ = _run(images, tmp_path / "c", detector)
        assert (stats["cached"], stats["rejected"]) == (2, 0)
        for k, blob in images.items():
            assert _same(again[k].detections, found[k].detections)
            image = decode_image(blob)
            lm = again[k].detections.landmarks[int(np.argmax(again[k].detections.scores))]
            assert aligned_crop(image, lm, 32).mean() > 20
    finally:
        torch.set_num_threads(before)


def test_sizes_from_the_hashing_pass_spare_a_second_read_and_still_catch_a_wrong_size(tmp_path):
    """prepare passes each photo's decoded size, read from the bytes it hashed: a cached entry is checked
    against it without reading the photo again, and a wrong recorded size is still rejected."""
    from marginlab.data.align.cache import decoded_size_from_header

    images = _images()
    _run(images, tmp_path / "c")
    sizes = {k: decoded_size_from_header(b) for k, b in images.items() if b != BROKEN}
    assert sorted(sizes.values()) == sorted(SIZES)
    target = next(k for k, b in images.items() if b != BROKEN and sizes[k] == (40, 56))
    for part in _parts(tmp_path / "c"):
        _rewrite(part, lambda r: r.update(height=r["height"] + 8) if r["sha256"] == target else None)
    reads: list[str] = []

    def read(k):
        reads.append(k)
        return images[k], k[:8]

    detector = FakeDetector()
    found, stats = detect_all(list(images), read, make_detector=lambda: detector, cache_dir=tmp_path / "c",
                              chunk_size=8, progress=False, sizes=sizes)
    assert (stats["cached"], stats["rejected"], stats["detected"]) == (4, 1, 1)
    assert _same(found[target].detections, fake_face(40, 56)) and detector.seen == [(40, 56)]
    # read once to detect the rejected image again, once to confirm the cached corrupt one: no cache-check reads
    assert sorted(reads) == sorted([target, next(k for k, b in images.items() if b == BROKEN)])
