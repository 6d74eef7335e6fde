"""Synthetic faces: degradations, ground truth, identities, determinism, splits and the written formats."""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest

from marginlab.core.config import SyntheticConfig
from marginlab.data.formats import (
    ARCFACE_TEMPLATE_112,
    decode_image,
    estimate_similarity,
    open_recordio,
    read_bin,
    read_identification_set,
    read_ijb,
)
from marginlab.data.synthetic import degrade as dg
from marginlab.data.synthetic import (
    IJB_NAME,
    TINYFACE_GALLERY,
    TINYFACE_PROBES,
    ImageSpec,
    generate_image,
    generate_images,
    identity_blocks,
    ijb_layout,
    quality_policies,
    verification_pairs,
    write_synthetic,
)
from marginlab.data.synthetic.faces import (
    FAMILY_SIZE,
    TEMPLATE_112,
    draw_nuisance,
    loose_matrix,
    make_identity,
    pose_matrix,
    rng_for,
)
from marginlab.data.synthetic.drawing import render_face

SMALL = SyntheticConfig(
    image_size=112,
    train_identities=8,
    train_images_per_identity=5,
    verification_identities=8,
    verification_pairs=40,
    ijb_identities=4,
    ijb_templates_per_identity=2,
    ijb_images_per_template=3,
    tinyface_identities=4,
    tinyface_distractors=6,
)


def _neutral(identity, seed=0, **over):
    """A frontal, unrolled, neutral-expression, unoccluded nuisance."""
    nz = draw_nuisance(rng_for(seed, "test", identity.id), identity, occlusion=False)
    base = dict(yaw=0.0, roll=0.0, scale=1.0, shift=(0.0, 0.0), smile=0.0, mouth_open=0.0, blink=False, gaze=(0.0, 0.0), glasses=False)
    base.update(over)
    return replace(nz, **base)


def _face(seed=3, ident=5, size=112):
    idt = make_identity(seed, ident)
    nz = _neutral(idt)
    return render_face(idt, nz, pose_matrix(nz, size), (size, size)).image


def _laplacian_var(img):
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


# --------------------------------------------------------------------------- ground truth
def test_gt_quality_is_product_of_remaining_quality():
    assert dg.gt_quality({}) == 1.0
    assert dg.gt_quality({"blur": 0.5, "noise": 0.5}) == pytest.approx(0.25)
    assert dg.gt_quality({"jpeg": 0.2, "exposure": 0.5, "low_resolution": 0.0}) == pytest.approx(0.8 * 0.5)
    assert dg.gt_quality({"blur": 1.0, "noise": 0.1}) == 0.0
    with pytest.raises(ValueError, match="blur"):
        dg.gt_quality({"blur": 1.2})


def test_gt_quality_strictly_decreasing_in_each_severity():
    rng = np.random.default_rng(0)
    for t in dg.DEGRADATION_TYPES:
        others = {u: float(rng.uniform(0, 0.9)) for u in dg.DEGRADATION_TYPES if u != t}
        qs = [dg.gt_quality({**others, t: s}) for s in np.linspace(0, 1, 6)]
        assert all(a > b for a, b in zip(qs, qs[1:])), (t, qs)


def test_degradation_name_and_columns():
    d = dg.Degradation(severities={"blur": 0.3, "jpeg": 0.7, "noise": 0.0})
    assert d.types == ("blur", "jpeg")
    assert d.name == "blur+jpeg"
    assert dg.Degradation().name == ""
    cols = dg.severity_columns(d)
    assert cols == {"sev_exposure": 0.0, "sev_blur": 0.3, "sev_low_resolution": 0.0, "sev_noise": 0.0, "sev_jpeg": 0.7}


# --------------------------------------------------------------------------- individual degradations
def test_exposure_hand_computed():
    img = np.full((4, 4, 3), 200, np.uint8)
    # c = 1 - 0.8 * 0.5 = 0.6 ; dark: 0.6 * 200 + 255 * (0.5 - 0.3 - 0.2) = 120 ; bright: + 255 * 0.4 = 222
    assert np.all(dg.apply_exposure(img, 0.5, -1.0) == 120)
    assert np.all(dg.apply_exposure(img, 0.5, 1.0) == 222)
    assert dg.apply_exposure(img, 0.0) is img
    # at s = 1 the dark image is squeezed into [0, 0.2 * 255]
    ramp = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (2, 1, 3))
    out = dg.apply_exposure(ramp, 1.0, -1.0)
    assert out.min() == 0 and out.max() == 51


def test_noise_sigma_matches_severity():
    img = np.full((200, 200, 3), 128, np.uint8)
    for s in (0.1, 0.25, 0.5):
        out = dg.apply_noise(img, s, np.random.default_rng(1)).astype(np.float64)
        assert out.std() == pytest.approx(60.0 * s, rel=0.03)
        assert abs(out.mean() - 128) < 0.5


def test_low_resolution_full_severity_leaves_11_pixel_blocks():
    img = (np.random.default_rng(0).random((112, 112, 3)) * 255).astype(np.uint8)
    out = dg.apply_low_resolution(img, 1.0, cv2.INTER_NEAREST)
    assert out.shape == img.shape
    # side ratio 1 - 0.9 = 0.1 -> 11 px; nearest up-scaling repeats 11 distinct rows and columns
    assert len(np.unique(out[:, :, 0], axis=0)) <= 11
    assert len(np.unique(out[:, :, 0], axis=1).T) <= 11


def test_blur_and_lowres_and_jpeg_monotone_on_a_face():
    face = _face()
    sev = [0.0, 0.25, 0.5, 0.75, 1.0]
    lap_blur = [_laplacian_var(dg.apply_blur(face, s)) for s in sev]
    lap_lr = [_laplacian_var(dg.apply_low_resolution(face, s)) for s in sev]
    assert all(a > b for a, b in zip(lap_blur, lap_blur[1:])), lap_blur
    assert all(a > b for a, b in zip(lap_lr, lap_lr[1:])), lap_lr
    err = [float(np.abs(dg.apply_jpeg(face, s).astype(float) - face).mean()) for s in sev]
    assert err[0] == 0.0 and all(a < b for a, b in zip(err[1:], err[2:])), err
    assert dg.apply_blur(face, 0.0) is face


def test_blur_scales_with_unit():
    face = _face()
    assert _laplacian_var(dg.apply_blur(face, 0.3, unit=2.0)) < _laplacian_var(dg.apply_blur(face, 0.3, unit=1.0))


def test_apply_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB uint8"):
        dg.apply_blur(np.zeros((8, 8), np.uint8), 0.5)


# --------------------------------------------------------------------------- sampling policies
def test_policy_sampling_rules():
    rng = np.random.default_rng(0)
    clean = dg.QualityPolicy(fraction=0.0)
    assert all(dg.sample_degradation(clean, rng).quality == 1.0 for _ in range(50))
    one = dg.QualityPolicy(fraction=1.0, severity=(0.2, 0.4), max_per_image=1, weights={"blur": 1.0, "noise": 0.0})
    for _ in range(50):
        d = dg.sample_degradation(one, rng)
        assert d.types == ("blur",) and 0.2 <= d.severity("blur") <= 0.4
    req = dg.QualityPolicy(fraction=1.0, max_per_image=2, required=("low_resolution",), required_severity=(0.55, 0.9))
    for _ in range(50):
        d = dg.sample_degradation(req, rng)
        assert 0.55 <= d.severity("low_resolution") <= 0.9 and 1 <= len(d.types) <= 2


def test_policy_degraded_share():
    pol = quality_policies(SyntheticConfig())["train"]
    rng = np.random.default_rng(5)
    draws = [dg.sample_degradation(pol, rng) for _ in range(3000)]
    share = np.mean([bool(d.types) for d in draws])
    assert share == pytest.approx(0.35, abs=0.03)
    assert max(len(d.types) for d in draws) == 2
    # the tail reaches unrecognisable quality
    assert min(d.quality for d in draws) < 0.05


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fraction=1.5), "fraction"),
        (dict(fraction=0.5, severity=(0.6, 0.2)), "severity"),
        (dict(fraction=0.5, max_per_image=0), "max_per_image"),
        (dict(fraction=0.5, weights={"sharpen": 1.0}), "sharpen"),
        (dict(fraction=0.5, weights={"blur": -1.0}), ">= 0"),
    ],
)
def test_policy_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dg.QualityPolicy(**kwargs)


# --------------------------------------------------------------------------- identities and rendering
def test_identity_is_a_pure_function_of_seed_and_id():
    a, b = make_identity(7, 13), make_identity(7, 13)
    assert a.skin == b.skin and a.eye_dx == b.eye_dx and np.array_equal(a.texture, b.texture)
    c = make_identity(8, 13)
    assert (c.skin, c.eye_dx) != (a.skin, a.eye_dx)
    assert a.family == 13 // FAMILY_SIZE


def test_landmarks_of_a_neutral_face_are_the_drawn_feature_centres():
    size = 224
    idt = make_identity(1, 2)
    nz = _neutral(idt)
    face = render_face(idt, nz, pose_matrix(nz, size), (size, size))
    np.testing.assert_allclose(face.landmarks, idt.landmarks() * size / 112, atol=1e-9)
    # the pupils (near black) sit exactly at the eye landmarks
    grey = cv2.cvtColor(face.image, cv2.COLOR_RGB2GRAY).astype(float)
    for x, y in face.landmarks[:2]:
        assert grey[int(round(y)), int(round(x))] < 50
    # identities stay close to the ArcFace template
    assert np.abs(idt.landmarks() - TEMPLATE_112).max() < 8


def test_landmarks_follow_pose():
    idt = make_identity(1, 4)
    nz = _neutral(idt, roll=10.0, scale=1.05, shift=(2.0, -1.0), yaw=0.3)
    face = render_face(idt, nz, pose_matrix(nz, 112), (112, 112))
    # roll tilts the eye line by the roll angle (cv2 angle is counter-clockwise on screen: y decreases)
    (lx, ly), (rx, ry) = face.landmarks[:2]
    assert math.degrees(math.atan2(ly - ry, rx - lx)) == pytest.approx(10.0, abs=2.0)
    # yaw > 0 moves the nose tip (depth 28) to the right of the eyes' midpoint
    assert face.landmarks[2, 0] > (lx + rx) / 2 + 3
    # still near the template (an aligned crop)
    assert np.abs(face.landmarks - ARCFACE_TEMPLATE_112).max() < 16


def test_loose_crop_aligns_back_onto_the_aligned_render():
    idt = make_identity(2, 9)
    nz = _neutral(idt)
    aligned = render_face(idt, nz, pose_matrix(nz, 112), (112, 112))
    place, size = loose_matrix(np.random.default_rng(3), 112)
    loose = render_face(idt, nz, (np.vstack([place, [0, 0, 1]]) @ np.vstack([pose_matrix(nz, 112), [0, 0, 1]]))[:2], size)
    assert loose.image.shape[:2] == (size[1], size[0]) and size[0] > 112
    # the exact similarity from the loose landmarks back to the aligned ones recovers the aligned face
    m = estimate_similarity(loose.landmarks, aligned.landmarks)
    back = cv2.warpAffine(loose.image, m, (112, 112), flags=cv2.INTER_LINEAR)
    inner = (slice(20, 100), slice(20, 92))
    diff = np.abs(back[inner].astype(float) - aligned.image[inner]).mean()
    assert diff < 10, diff
    other = render_face(make_identity(2, 10), _neutral(make_identity(2, 10)), pose_matrix(nz, 112), (112, 112)).image
    assert np.abs(other[inner].astype(float) - aligned.image[inner]).mean() > 2 * diff


def test_identities_are_distinct_and_families_alike():
    cfg = SyntheticConfig()
    ids = list(range(12))  # three families of four
    specs = [ImageSpec("train", i, k, "hq", occlusion=False) for i in ids for k in range(6)]
    ims = generate_images(11, specs, replace_cfg(cfg), workers=1)
    x = np.stack([cv2.resize(decode_image(im.jpeg)[24:100, 20:92], (18, 19), interpolation=cv2.INTER_AREA).astype(float).ravel() for im in ims])
    y = np.array([s.identity for s in specs])
    d = np.sqrt(((x[:, None] - x[None]) ** 2).mean(-1))
    same = y[:, None] == y[None]
    off = ~np.eye(len(y), dtype=bool)
    fam = (y[:, None] // FAMILY_SIZE) == (y[None] // FAMILY_SIZE)
    intra, inter_fam, inter_other = d[same & off].mean(), d[fam & ~same].mean(), d[~fam].mean()
    assert intra < inter_fam < inter_other, (intra, inter_fam, inter_other)
    # nearest neighbour (leave one out) recognises identities far above chance (1/12), not perfectly
    nn = (d + np.eye(len(y)) * 1e9).argmin(1)
    acc = (y[nn] == y).mean()
    assert 0.3 < acc < 1.0, acc


def replace_cfg(cfg: SyntheticConfig, **kw) -> SyntheticConfig:
    return cfg.model_copy(update=kw)


# --------------------------------------------------------------------------- determinism
def test_generate_image_deterministic_and_seed_sensitive():
    spec = ImageSpec("train", 3, 2, "lq")
    a = generate_image(5, spec, SMALL)
    b = generate_image(5, spec, SMALL)
    assert a.jpeg == b.jpeg and a.degradation == b.degradation
    assert generate_image(6, spec, SMALL).jpeg != a.jpeg
    assert generate_image(5, replace(spec, image=3), SMALL).jpeg != a.jpeg
    assert generate_image(5, replace(spec, split="hq"), SMALL).jpeg != a.jpeg


def test_generation_is_order_and_worker_independent():
    specs = [ImageSpec("train", i % 7, i // 7, "train") for i in range(70)]
    serial = generate_images(1, specs, SMALL, workers=1)
    reverse = generate_images(1, specs[::-1], SMALL, workers=1)[::-1]
    pooled = generate_images(1, specs, SMALL, workers=2)
    assert [im.jpeg for im in serial] == [im.jpeg for im in reverse] == [im.jpeg for im in pooled]


def test_media_frames_share_the_scene():
    cfg = SMALL
    frames = [generate_image(0, ImageSpec("ijb", 30, k, "hq", loose=False, occlusion=False, media=1), cfg) for k in range(2)]
    other = generate_image(0, ImageSpec("ijb", 30, 2, "hq", loose=False, occlusion=False, media=2), cfg)
    a, b, c = (decode_image(f.jpeg).astype(float) for f in (*frames, other))
    assert np.abs(a - b).mean() < np.abs(a - c).mean()
    assert abs(frames[0].yaw - frames[1].yaw) < 0.3


# --------------------------------------------------------------------------- pairs and layouts
def test_verification_pairs_layout():
    ids = list(range(100, 124))
    pairs = verification_pairs(ids, 200, np.random.default_rng(0))
    issame = np.array([p[2] for p in pairs])
    assert len(pairs) == 200
    for fold in issame.reshape(10, 20):
        assert fold[:10].all() and not fold[10:].any()
    for a, b, same in pairs:
        assert (a == b) == same and a in ids and b in ids
    impostors = [(a, b) for a, b, s in pairs if not s]
    hard = np.mean([a // FAMILY_SIZE == b // FAMILY_SIZE for a, b in impostors])
    assert 0.35 < hard < 0.7  # half look-alike impostors (random ones rarely share a family)
    # balanced use of identities by genuine pairs
    counts = pd.Series([a for a, _, s in pairs if s]).value_counts()
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("n, ids, match", [(30, range(10), "multiple of 20"), (0, range(10), "multiple of 20"), (20, [5], ">= 2")])
def test_verification_pairs_errors(n, ids, match):
    with pytest.raises(ValueError, match=match):
        verification_pairs(list(ids), n, np.random.default_rng(0))


def test_identity_blocks_disjoint_and_contiguous():
    blocks = identity_blocks(SyntheticConfig())
    seen: set[int] = set()
    for r in blocks.values():
        assert not seen & set(r)
        seen |= set(r)
    assert seen == set(range(100 + 60 + 40 + 40 + 200))


def test_ijb_layout_templates_media_pairs():
    lay = ijb_layout(SMALL, 0)
    f = lay.faces
    assert len(f) == 4 * 2 * 3 == len(lay.specs)
    assert f.groupby("tid").size().eq(3).all()
    assert f.groupby("mid")["tid"].nunique().eq(1).all()  # a medium belongs to one template
    n_t = f["tid"].nunique()
    assert len(lay.pairs) == n_t * (n_t - 1) // 2
    owner = f.groupby("tid")["identity"].first()
    expect = (owner.loc[lay.pairs.tid1].to_numpy() == owner.loc[lay.pairs.tid2].to_numpy()).astype(int)
    assert np.array_equal(lay.pairs.label.to_numpy(), expect) and expect.sum() == 4
    assert all(s.loose for s in lay.specs)


# --------------------------------------------------------------------------- the written set
@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    summary = write_synthetic(out, SMALL, seed=3, workers=1, progress=False)
    return out, summary


def test_written_layout(written):
    out, _ = written
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and "loose_crop" not in p.parts and p.parent.name not in ("Probe", "Gallery_Match", "Gallery_Distractor")}
    assert names == {
        "train.rec", "train.idx", "train_meta.parquet", "samples.png",
        "verification/hq.bin", "verification/hq_meta.parquet", "verification/lq.bin", "verification/lq_meta.parquet",
        f"ijb/{IJB_NAME}/meta/{IJB_NAME}_face_tid_mid.txt", f"ijb/{IJB_NAME}/meta/{IJB_NAME}_template_pair_label.txt",
        f"ijb/{IJB_NAME}/meta/{IJB_NAME}_name_5pts_score.txt", f"ijb/{IJB_NAME}/meta.parquet", "tinyface/meta.parquet",
    }
    png = cv2.imread(str(out / "samples.png"))
    assert png is not None and png.shape[0] > 500


def test_train_recordio_and_meta(written):
    out, summary = written
    meta = pd.read_parquet(out / "train_meta.parquet")
    reader = open_recordio(out / "train.rec")
    assert len(reader) == len(meta) == 8 * 5 and reader.num_classes == 8
    assert np.array_equal(meta["index"], np.arange(len(meta)))
    assert np.array_equal(reader.labels, meta["label"])
    img = decode_image(reader[7][0])
    assert img.shape == (112, 112, 3)
    sev = meta[[f"sev_{t}" for t in dg.DEGRADATION_TYPES]].to_numpy()
    np.testing.assert_allclose(meta["gt_quality"], np.prod(1 - sev, axis=1))
    for names, row in zip(meta["degradations"], sev):
        assert names == "+".join(t for t, s in zip(dg.DEGRADATION_TYPES, row) if s > 0)
    assert set(meta["identity"]) <= set(identity_blocks(SMALL)["train"])
    assert summary["train"]["images"] == 40
    lm = np.stack(meta["landmarks"].to_numpy()).reshape(-1, 5, 2)
    assert lm.shape == (40, 5, 2) and np.abs(lm - ARCFACE_TEMPLATE_112).max() < 20


def test_verification_bins(written):
    out, _ = written
    blocks = identity_blocks(SMALL)
    q = {}
    for name in ("hq", "lq"):
        images, issame = read_bin(out / "verification" / f"{name}.bin")
        meta = pd.read_parquet(out / "verification" / f"{name}_meta.parquet")
        assert len(images) == 80 and len(issame) == 40 and issame.sum() == 20
        assert np.array_equal(issame.reshape(10, 4), np.tile([True, True, False, False], (10, 1)))
        ident = meta["identity"].to_numpy().reshape(-1, 2)
        assert np.array_equal(ident[:, 0] == ident[:, 1], issame)
        assert set(meta["identity"]) <= set(blocks["verification"])
        q[name] = meta["gt_quality"].mean()
        if name == "hq":
            assert (meta["occlusion"] == "").all()
    assert q["hq"] > 0.9 > 0.6 > q["lq"]


def test_ijb_set(written):
    out, summary = written
    root = out / "ijb" / IJB_NAME
    s = read_ijb(root, IJB_NAME)
    meta = pd.read_parquet(root / "meta.parquet")
    assert len(s.faces) == len(meta) == 24
    assert summary["ijb"][IJB_NAME]["templates"] == 8
    assert set(meta["identity"]) <= set(identity_blocks(SMALL)["ijb"])
    assert (s.faces["score"].between(0.3, 1.0)).all()
    for i in (0, 5):
        crop = decode_image((root / "loose_crop" / s.faces["image"][i]).read_bytes())
        assert crop.shape[0] > 112 and crop.shape[1] > 112
        assert s.load_aligned(i).shape == (112, 112, 3)
        lm = np.asarray(s.faces["landmarks"][i]).reshape(5, 2)
        np.testing.assert_allclose(lm, np.asarray(meta["landmarks"][i]).reshape(5, 2), atol=1e-3)
        assert (lm >= 0).all() and (lm[:, 0] < crop.shape[1]).all() and (lm[:, 1] < crop.shape[0]).all()


def test_tinyface_set(written):
    out, _ = written
    parts = read_identification_set(out / "tinyface")
    meta = pd.read_parquet(out / "tinyface" / "meta.parquet")
    assert len(parts["Probe"][0]) == 4 * TINYFACE_PROBES and len(parts["Gallery_Match"][0]) == 4 * TINYFACE_GALLERY
    assert (parts["Gallery_Distractor"][1] == -1).all() and len(parts["Gallery_Distractor"][0]) == 6
    for part, (paths, labels) in parts.items():
        m = meta[meta["part"] == part].sort_values("index")
        assert [p.name for p in paths] == [f.split("/")[-1] for f in m["file"]]
        assert np.array_equal(labels, m["label"].to_numpy())
    probes = meta[meta["part"] == "Probe"]
    assert (probes["sev_low_resolution"] >= 0.55).all()
    assert probes["gt_quality"].max() <= 0.45
    blocks = identity_blocks(SMALL)
    assert set(meta.loc[meta.part != "Gallery_Distractor", "identity"]) <= set(blocks["tinyface"])
    assert set(meta.loc[meta.part == "Gallery_Distractor", "identity"]) <= set(blocks["distractor"])


def test_written_set_is_deterministic(written, tmp_path):
    out, _ = written
    again = tmp_path / "again"
    write_synthetic(again, SMALL, seed=3, workers=2, progress=False)
    for rel in ("train.rec", "train.idx", "verification/lq.bin", f"ijb/{IJB_NAME}/meta/{IJB_NAME}_name_5pts_score.txt"):
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = tmp_path / "other"
    write_synthetic(other, SMALL.model_copy(update={"train_identities": 2, "train_images_per_identity": 2}), seed=4, workers=1, progress=False)
    assert (other / "train.rec").read_bytes() != (out / "train.rec").read_bytes()
