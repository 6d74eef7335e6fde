"""IJB meta files and 5-point alignment to the ArcFace template."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest

from marginlab.data.formats import (
    ARCFACE_TEMPLATE_112,
    IJBFormatError,
    MissingFileError,
    align_face,
    arcface_template,
    encode_png,
    estimate_similarity,
    read_ijb,
    transform_points,
    write_ijb_meta,
)

TEMPLATE = ARCFACE_TEMPLATE_112


def test_template_is_96x112_template_shifted_by_8():
    assert TEMPLATE[0].tolist() == pytest.approx([38.2946, 51.6963])
    assert TEMPLATE[4].tolist() == pytest.approx([70.7299, 92.2041])
    np.testing.assert_allclose(arcface_template(224), TEMPLATE * 2)


# ----------------------------------------------------------------- similarity estimation


def _similarity(scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.hstack([scale * rot, np.array(shift)[:, None]])


def _lstsq_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Independent reference: s R = [[a, -b], [b, a]] makes the problem linear in (a, b, tx, ty)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def test_exact_similarity_is_recovered():
    forward = _similarity(1.7, 25.0, (40.0, 30.0))
    src = transform_points(forward, TEMPLATE)
    m = estimate_similarity(src, TEMPLATE)
    np.testing.assert_allclose(transform_points(m, src), TEMPLATE, atol=1e-9)
    # m is the inverse of forward: scale 1/1.7, rotation -25 degrees
    assert math.hypot(m[0, 0], m[1, 0]) == pytest.approx(1 / 1.7)
    assert math.degrees(math.atan2(m[1, 0], m[0, 0])) == pytest.approx(-25.0)


def test_least_squares_matches_linear_reference_on_noisy_points():
    rng = np.random.default_rng(3)
    src = transform_points(_similarity(0.8, -40.0, (5.0, -7.0)), TEMPLATE) + rng.normal(0, 1.5, (5, 2))
    np.testing.assert_allclose(estimate_similarity(src, TEMPLATE), _lstsq_similarity(src, TEMPLATE), atol=1e-9)
    # a mirrored face: the best *rotation* (no reflection) is still the linear reference
    mirrored = src * np.array([-1.0, 1.0])
    m = estimate_similarity(mirrored, TEMPLATE)
    assert np.linalg.det(m[:, :2]) > 0
    np.testing.assert_allclose(m, _lstsq_similarity(mirrored, TEMPLATE), atol=1e-9)


def test_similarity_errors():
    with pytest.raises(ValueError, match="all identical"):
        estimate_similarity(np.ones((5, 2)), TEMPLATE)
    with pytest.raises(ValueError, match="shapes differ"):
        estimate_similarity(TEMPLATE[:4], TEMPLATE)
    with pytest.raises(ValueError, match="NaN"):
        estimate_similarity(np.full((5, 2), np.nan), TEMPLATE)
    with pytest.raises(ValueError, match="expected 5 landmarks"):
        align_face(np.zeros((50, 50, 3), np.uint8), TEMPLATE[:4])
    with pytest.raises(ValueError, match="uint8 image"):
        align_face(np.zeros((50, 50), np.uint8), TEMPLATE)


# ----------------------------------------------------------------- alignment of images


def _blob_image(points: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian blobs of peak 250 at sub-pixel ``points`` on black, all three channels equal."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    img = np.zeros(shape)
    for x, y in points:
        img = np.maximum(img, 250 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)))
    return np.repeat(np.round(img).astype(np.uint8)[..., None], 3, axis=2)


def _centroids(image: np.ndarray, near: np.ndarray, radius: int = 6) -> np.ndarray:
    gray = image[..., 0].astype(np.float64)
    out = []
    for x, y in near:
        x0, y0 = round(x), round(y)
        win = gray[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
        win = np.where(win > 20, win, 0)  # ignore the faint tails of neighbouring blobs
        ys, xs = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
        out.append([(win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()])
    return np.array(out)


def test_align_identity_when_landmarks_are_the_template():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    aligned = align_face(image, TEMPLATE)
    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    np.testing.assert_array_equal(aligned, image)
    aligned_flat = align_face(image, TEMPLATE.reshape(-1))  # (10,) form
    np.testing.assert_array_equal(aligned_flat, image)


@pytest.mark.parametrize(("scale", "degrees", "shift"), [(1.0, 0.0, (0.0, 0.0)), (2.3, 30.0, (60.0, 20.0)), (0.9, -18.0, (-10.0, 35.0))])
def test_align_scaled_rotated_shifted_face(scale, degrees, shift):
    points = transform_points(_similarity(scale, degrees, shift), TEMPLATE)
    canvas = (int(points[:, 1].max()) + 60, int(points[:, 0].max()) + 60)
    image = _blob_image(points, canvas, sigma=2.0 * scale)
    aligned = align_face(image, points)
    found = _centroids(aligned, TEMPLATE)
    assert np.abs(found - TEMPLATE).max() < 0.5, found - TEMPLATE


def test_black_border_outside_source():
    image = np.full((60, 60, 3), 200, np.uint8)
    # a tiny face in the corner: most of the 112x112 crop lies outside the source image
    points = transform_points(_similarity(0.3, 0.0, (-5.0, -10.0)), TEMPLATE)
    aligned = align_face(image, points)
    # crop pixel (0, 0) comes from source point 0.3 * (0, 0) + (-5, -10): outside, hence black;
    # crop pixel (111, 111) comes from (28.3, 23.3): inside
    assert (aligned[0, 0] == 0).all() and (aligned[-1, -1] == 200).all()


# ----------------------------------------------------------------- IJB meta


def _faces_pairs() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    faces = pd.DataFrame(
        {
            "image": ["1.jpg", "2.jpg", "sub/3.png", "4.jpg"],
            "tid": [10, 10, 11, 12],
            "mid": [100, 101, 102, 103],
            "landmarks": [rng.uniform(0, 100, 10).astype(np.float32) for _ in range(4)],
            "score": [0.99, 0.5, 1.0, 0.123456789],
        }
    )
    pairs = pd.DataFrame({"tid1": [10, 10, 11], "tid2": [11, 12, 12], "label": [1, 0, 0]})
    return faces, pairs


def test_meta_round_trip_and_file_format(tmp_path):
    faces, pairs = _faces_pairs()
    paths = write_ijb_meta(tmp_path, "ijb_syn", faces, pairs)
    assert paths["face_tid_mid"] == tmp_path / "meta" / "ijb_syn_face_tid_mid.txt"
    assert (tmp_path / "meta" / "ijb_syn_face_tid_mid.txt").read_text().splitlines() == [
        "1.jpg 10 100",
        "2.jpg 10 101",
        "sub/3.png 11 102",
        "4.jpg 12 103",
    ]
    assert (tmp_path / "meta" / "ijb_syn_template_pair_label.txt").read_text() == "10 11 1\n10 12 0\n11 12 0\n"
    first = (tmp_path / "meta" / "ijb_syn_name_5pts_score.txt").read_text().splitlines()[0].split(" ")
    assert first[0] == "1.jpg" and len(first) == 12 and float(first[-1]) == 0.99
    assert sorted(p.name for p in (tmp_path / "meta").iterdir()) == [
        "ijb_syn_face_tid_mid.txt",
        "ijb_syn_name_5pts_score.txt",
        "ijb_syn_template_pair_label.txt",
    ]
    ijb = read_ijb(tmp_path, "ijb_syn")
    assert len(ijb) == 4
    assert ijb.faces["image"].tolist() == faces["image"].tolist()
    assert ijb.faces["tid"].tolist() == [10, 10, 11, 12] and ijb.faces["mid"].tolist() == [100, 101, 102, 103]
    assert ijb.faces["score"].tolist() == [0.99, 0.5, 1.0, 0.123456789]
    for got, want in zip(ijb.faces["landmarks"], faces["landmarks"]):
        np.testing.assert_array_equal(got, want)  # float32 survives the text round trip exactly
    np.testing.assert_array_equal(ijb.landmarks, np.stack(faces["landmarks"]).reshape(4, 5, 2))
    assert ijb.pairs.to_dict("list") == {"tid1": [10, 10, 11], "tid2": [11, 12, 12], "label": [1, 0, 0]}


def test_reads_insightface_style_text(tmp_path):
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "ijbb_face_tid_mid.txt").write_text("1.jpg 1 69544\n2.jpg 1 3720\n")
    (meta / "ijbb_name_5pts_score.txt").write_text(
        "1.jpg 46.06 62.24 87.53 60.83 64.44 86.09 48.79 105.1 84.05 104.0 0.999\n"
        "2.jpg 40.0 50.0 80.0 50.0 60.0 70.0 45.0 90.0 75.0 90.0 0.8 \n"  # trailing space as in some files
    )
    (meta / "ijbb_template_pair_label.txt").write_text("1 1 1\n")
    ijb = read_ijb(tmp_path, "ijbb")
    assert ijb.faces["mid"].tolist() == [69544, 3720]
    assert ijb.landmarks[0, 3].tolist() == pytest.approx([48.79, 105.1])
    assert ijb.faces["score"].tolist() == [0.999, 0.8]


def test_load_aligned_uses_landmarks(tmp_path):
    points = transform_points(_similarity(1.6, 12.0, (20.0, 15.0)), TEMPLATE)
    image = _blob_image(points, (240, 230), sigma=3.0)
    (tmp_path / "loose_crop").mkdir()
    (tmp_path / "loose_crop" / "face.png").write_bytes(encode_png(image))
    faces = pd.DataFrame({"image": ["face.png"], "tid": [1], "mid": [1], "landmarks": [points.reshape(-1)], "score": [1.0]})
    write_ijb_meta(tmp_path, "t", faces, pd.DataFrame({"tid1": [1], "tid2": [1], "label": [1]}))
    ijb = read_ijb(tmp_path, "t")
    np.testing.assert_array_equal(ijb.load_image(0), image)
    aligned = ijb.load_aligned(0)
    assert aligned.shape == (112, 112, 3)
    assert np.abs(_centroids(aligned, TEMPLATE) - TEMPLATE).max() < 0.5
    expected = cv2.warpAffine(image, estimate_similarity(points, TEMPLATE), (112, 112))
    np.testing.assert_array_equal(aligned, expected)


def test_missing_image_and_meta(tmp_path):
    faces, pairs = _faces_pairs()
    write_ijb_meta(tmp_path, "s", faces, pairs)
    ijb = read_ijb(tmp_path, "s")
    with pytest.raises(MissingFileError, match=r"loose_crop/2\.jpg: image of face 1 \(line 2 of .*s_face_tid_mid\.txt\) not found"):
        ijb.load_aligned(1)
    (tmp_path / "meta" / "s_template_pair_label.txt").unlink()
    with pytest.raises(MissingFileError, match="s_template_pair_label.txt: IJB template pair/label file not found"):
        read_ijb(tmp_path, "s")


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("face_tid_mid", "1.jpg 10 100\n2.jpg 10 101\n", r"4 faces but s_face_tid_mid\.txt lists 2"),
        ("face_tid_mid", "1.jpg 10 100\nX.jpg 10 101\nsub/3.png 11 102\n4.jpg 12 103\n", r"line 2: image '2\.jpg' differs from 'X\.jpg'"),
        ("face_tid_mid", "1.jpg 10 100\n2.jpg ten 101\nsub/3.png 11 102\n4.jpg 12 103\n", r"line 2: field 'ten' is not an integer"),
        ("face_tid_mid", "1.jpg 10 100\n2.jpg 10\nsub/3.png 11 102\n4.jpg 12 103\n", r"line 2: expected 3 space-separated fields, found 2"),
        ("template_pair_label", "10 11 1\n10 99 0\n", r"line 2: tid2 99 is not a template of any face"),
        ("template_pair_label", "10 11 2\n", r"line 1: label must be 0 or 1, got 2"),
        ("template_pair_label", "10 11 1 7\n", r"line 1: expected 3 space-separated fields, found 4"),
        ("template_pair_label", "", r"empty IJB template pair/label file"),
        ("name_5pts_score", "nan", r"line 1: field 'nan' is not a finite number"),
        ("name_5pts_score", "inf", r"line 1: landmarks and score must be finite"),
    ],
)
def test_meta_errors_name_file_and_line(tmp_path, file, text, message):
    faces, pairs = _faces_pairs()
    paths = write_ijb_meta(tmp_path, "s", faces, pairs)
    if file == "name_5pts_score":
        text = "".join(f"{name} 1 2 3 4 5 6 7 8 9 {text} 1\n" for name in faces["image"])
    paths[file].write_text(text)
    with pytest.raises(IJBFormatError, match=message):
        read_ijb(tmp_path, "s")


def test_write_meta_validation(tmp_path):
    faces, pairs = _faces_pairs()
    with pytest.raises(IJBFormatError, match=r"faces lacks column\(s\) \['score'\]"):
        write_ijb_meta(tmp_path, "s", faces.drop(columns="score"), pairs)
    bad = faces.copy()
    bad.at[1, "landmarks"] = np.zeros(8)
    with pytest.raises(IJBFormatError, match="row 1: landmarks must be 10 finite numbers"):
        write_ijb_meta(tmp_path, "s", bad, pairs)
    bad = faces.copy()
    bad.at[2, "image"] = "has space.jpg"
    with pytest.raises(IJBFormatError, match="row 2: image name 'has space.jpg'"):
        write_ijb_meta(tmp_path, "s", bad, pairs)
    with pytest.raises(IJBFormatError, match="tid1 77 is not a template"):
        write_ijb_meta(tmp_path, "s", faces, pd.DataFrame({"tid1": [77], "tid2": [10], "label": [0]}))
    assert not (tmp_path / "meta").exists() or not any((tmp_path / "meta").iterdir())
