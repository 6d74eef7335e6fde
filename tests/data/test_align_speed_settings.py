"""data.alignment.min_face_fraction (issue #24): the face-size floor relative to the photo.

Not timed (bench/bench_detect_speed.py measures the speed): the pyramid levels it skips, that the
same faces and landmarks are found on rendered photo-sized scenes, that 0 is the behaviour of before
(and its cache fingerprint), and that the config rejects bad values naming the key.
"""

from __future__ import annotations

import numpy as np
import pytest

from marginlab.core.config import AlignmentConfig, ConfigError, Params, validate_params
from marginlab.data.align import Detector, choose_face, fingerprint
from marginlab.data.align.detector import PYRAMID_FACTOR
from marginlab.data.scenes import render_scene


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the detector at one thread


@pytest.fixture(scope="module")
def fixed():
    return Detector(device="cpu", min_face_fraction=0.0)


@pytest.fixture(scope="module")
def relative():
    return Detector(device="cpu", min_face_fraction=0.1)


def test_the_fraction_skips_the_finest_pyramid_levels(fixed, relative):
    shape = (768, 1024, 3)
    old, new = fixed.pyramid_scales(shape), relative.pyramid_scales(shape)
    # 0.1 x 768 = 76.8 px, snapped down to the fixed floor's grid: 20 / 0.709**3 = 56.1 px
    assert fixed.min_face(shape) == 20.0 and relative.min_face(shape) == pytest.approx(20 / PYRAMID_FACTOR**3)
    assert len(old) == 11 and len(new) == 8
    # the levels kept are the coarse levels of the fixed floor, the same scales: the 3 finest are skipped
    np.testing.assert_allclose(new, old[3:], rtol=1e-12)
    for side in (240, 480, 600, 768, 1024, 3000):  # the floor never exceeds the fraction, and is within one step of it
        m = relative.min_face((side, side, 3))
        assert m <= max(20.0, 0.1 * side) and (m == 20.0 or m / PYRAMID_FACTOR > 0.1 * side)
    # below min_face_size / fraction the fixed floor still rules: a 160x160 image is searched as before
    assert relative.pyramid_scales((160, 160, 3)) == fixed.pyramid_scales((160, 160, 3))


def test_pyramid_scales_restates_facenet_pytorch_loop(relative, monkeypatch):
    """The levels facenet-pytorch's detect_face resamples the whole input to are the ones
    pyramid_scales names (so the documented skip is the real one)."""
    import facenet_pytorch.models.utils.detect_face as df

    sizes = []
    real = df.imresample

    def spy(img, sz):
        if img.shape[2] == 480:  # the whole 640x480 input, not an R-/O-Net crop
            sizes.append(tuple(sz))
        return real(img, sz)

    monkeypatch.setattr(df, "imresample", spy)
    scene = render_scene(3, 0, 0, canvas=(640, 480), face_px=(160, 161), max_rotation=0)
    relative.detect([scene.image])
    expected = [(int(480 * s + 1), int(640 * s + 1)) for s in relative.pyramid_scales((480, 640, 3))]
    assert sizes == expected and len(sizes) == 8  # 145 px down to 15 px on the shorter side


def test_same_faces_and_landmarks_on_photo_sized_scenes(fixed, relative):
    """Faces of realistic size (box ~0.15-0.35 of the shorter side) at 640x480 and 1024x768: the same
    face is kept, its landmarks within a few pixels."""
    kept_old = kept_new = 0
    for size in ((640, 480), (1024, 768)):
        short = min(size)
        scenes = [render_scene(31, i, i, canvas=size, face_px=(0.25 * short, 0.5 * short)) for i in range(6)]
        images = [s.image for s in scenes]
        for s, a, b in zip(scenes, fixed.detect(images), relative.detect(images)):
            ca = choose_face(a, s.image.shape[:2], min_score=0.9, multiple_faces="largest", no_face="skip")
            cb = choose_face(b, s.image.shape[:2], min_score=0.9, multiple_faces="largest", no_face="skip")
            kept_old += ca.face >= 0
            kept_new += cb.face >= 0
            if ca.face >= 0 and cb.face >= 0:
                diff = np.linalg.norm(a.landmarks[ca.face] - b.landmarks[cb.face], axis=1).mean()
                assert diff < 0.05 * 112 * s.scale  # within 5 % of the face's template width
    assert kept_new >= kept_old >= 8  # here the relative floor even finds two faces the fixed one misses


def test_no_fraction_is_the_old_detector_and_its_cache_fingerprint(fixed, relative):
    old_settings = {"detector", "facenet_pytorch", "weights_sha256", "min_face_size", "thresholds", "pyramid_factor",
                    "max_side", "device_type"}
    assert set(fixed.settings()) == old_settings  # a cache filled before issue #24 is still found
    assert relative.settings()["min_face_fraction"] == 0.1
    assert fingerprint(relative.settings()) != fingerprint(fixed.settings())
    with pytest.raises(ValueError, match="min_face_fraction"):
        Detector(device="cpu", min_face_fraction=1.0)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, "big"])
def test_config_rejects_bad_fractions_naming_the_key(bad):
    with pytest.raises(ConfigError, match=r"data\.alignment\.min_face_fraction"):
        validate_params({"data": {"alignment": {"min_face_fraction": bad}}})


def test_config_default_and_the_detectors_built_from_it(monkeypatch):
    from marginlab import inference
    from marginlab.data.prepare.ingest_aligned import make_detector

    assert AlignmentConfig().min_face_fraction == 0.1
    params = Params.model_validate({"data": {"alignment": {"min_face_fraction": 0.0, "device": "cpu"}}})
    assert make_detector(params).min_face_fraction == 0.0
    import marginlab.data.align as align_pkg  # align_faces imports Detector from it when called

    built = []

    class Spy(Detector):
        def __init__(self, **kwargs):
            built.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(align_pkg, "Detector", Spy)
    scene = render_scene(3, 1, 0, canvas=(320, 240), face_px=(100, 101), max_rotation=0)
    crops, statuses = inference.align_faces([scene.image])
    assert built[0]["min_face_fraction"] == 0.1 and statuses == ["ok"] and crops[0].shape == (112, 112, 3)
