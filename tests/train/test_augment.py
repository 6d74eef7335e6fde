"""AdaFace augmentations: semantics of each step, probabilities, determinism, torchvision parity."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from scipy import stats
from torchvision.transforms import RandomResizedCrop

from marginlab.core.config import AugmentConfig
from marginlab.train.input.augment import (
    INTERPOLATIONS,
    AdaFaceAugment,
    AugmentParams,
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    low_resolution,
    paste_crop,
    random_resized_crop_params,
    rgb_to_gray,
)

OFF = {"crop_p": 0.0, "lowres_p": 0.0, "photometric_p": 0.0, "flip_p": 0.0}


def only(**kw) -> AdaFaceAugment:
    return AdaFaceAugment(AugmentConfig(**{**OFF, **kw}))


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """112x112 RGB noise with no black pixel (a black canvas is distinguishable) and full-band detail."""
    return np.random.default_rng(123).integers(1, 256, size=(112, 112, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- crop parameters
def test_crop_fallback_too_wide_ratio_hand_computed():
    # w = sqrt(A r) >= sqrt(0.9 * 112^2 * 3) = 184 > 112 on every attempt -> fallback:
    # image ratio 1 < min ratio 3 -> w = 112, h = round(112 / 3) = 37, centred: top = (112-37)//2 = 37.
    box = random_resized_crop_params(112, 112, (0.9, 1.0), (3.0, 4.0), np.random.default_rng(0))
    assert box == (37, 0, 37, 112)


def test_crop_fallback_too_tall_ratio_hand_computed():
    # h = sqrt(A / r) >= sqrt(0.9 * 112^2 / 0.25) = 212 > 112 -> fallback: h = 112, w = round(112*0.25) = 28,
    # left = (112 - 28) // 2 = 42.
    box = random_resized_crop_params(112, 112, (0.9, 1.0), (0.2, 0.25), np.random.default_rng(0))
    assert box == (0, 42, 112, 28)


def test_crop_fallback_whole_image():
    # area 1.5-2x the image never fits; ratio 1 inside [1, 1] -> whole image.
    box = random_resized_crop_params(112, 112, (1.5, 2.0), (1.0, 1.0), np.random.default_rng(0))
    assert box == (0, 0, 112, 112)


def test_crop_params_inside_image_and_in_range():
    rng = np.random.default_rng(1)
    H, W = 112, 96
    for _ in range(500):
        top, left, h, w = random_resized_crop_params(H, W, (0.2, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 < h <= H and 0 < w <= W
        assert 0 <= top <= H - h and 0 <= left <= W - w
        # accepted boxes respect the area range up to rounding of w and h
        assert (h * w) / (H * W) <= 1.0


def test_crop_params_match_torchvision_distribution():
    """Same sampling rule as torchvision's RandomResizedCrop.get_params (two-sample KS tests)."""
    H, W, n = 112, 96, 3000
    scale, ratio = (0.2, 1.0), (3 / 4, 4 / 3)
    rng = np.random.default_rng(7)
    ours = np.array([random_resized_crop_params(H, W, scale, ratio, rng) for _ in range(n)], dtype=float)
    torch.manual_seed(7)
    dummy = torch.zeros(3, H, W)
    ref = np.array([RandomResizedCrop.get_params(dummy, list(scale), list(ratio)) for _ in range(n)], dtype=float)
    for k, name in enumerate(["top", "left", "h", "w"]):
        p = stats.ks_2samp(ours[:, k], ref[:, k]).pvalue
        assert p > 1e-3, f"{name} distribution differs from torchvision (KS p={p:.2g})"
    # and a gross check on the area fraction: E[U(0.2, 1)] = 0.6, slightly less because large
    # draws with extreme ratios are rejected more often
    frac = ours[:, 2] * ours[:, 3] / (H * W)
    assert 0.5 < frac.mean() < 0.62


@pytest.mark.parametrize("scale, ratio", [((0.0, 1.0), (0.75, 1.33)), ((0.5, 0.2), (0.75, 1.33)), ((0.2, 1.0), (2.0, 1.0))])
def test_crop_params_reject_bad_ranges(scale, ratio):
    with pytest.raises(ValueError, match="crop"):
        random_resized_crop_params(112, 112, scale, ratio, np.random.default_rng(0))


def test_paste_crop_keeps_region_and_blackens_rest(face):
    out = paste_crop(face, 10, 20, 30, 40)
    assert out.shape == face.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[10:40, 20:60], face[10:40, 20:60])
    mask = np.ones(face.shape[:2], bool)
    mask[10:40, 20:60] = False
    assert (out[mask] == 0).all()


def test_crop_augmentation_pastes_at_place(face):
    aug = only(crop_p=1.0)
    for seed in range(20):
        params = aug.draw(np.random.default_rng(seed), 112, 112)
        out, flags = aug(face, np.random.default_rng(seed))
        top, left, h, w = params.crop
        assert flags == {"crop": True, "lowres": False, "photometric": False, "flip": False}
        assert out.shape == face.shape
        np.testing.assert_array_equal(out[top : top + h, left : left + w], face[top : top + h, left : left + w])
        inside = np.zeros(face.shape[:2], bool)
        inside[top : top + h, left : left + w] = True
        assert (out[~inside] == 0).all()
        assert (out[inside] > 0).all()  # face has no black pixel: nothing else got blackened


# --------------------------------------------------------------------------- low resolution
def test_lowres_nearest_hand_computed():
    img = np.arange(16 * 3, dtype=np.uint8).reshape(4, 4, 3)
    out = low_resolution(img, 0.5, cv2.INTER_NEAREST, cv2.INTER_NEAREST)
    # 4 -> 2 nearest keeps source rows/cols 0 and 2; 2 -> 4 repeats each: out[y, x] = img[2(y//2), 2(x//2)]
    expected = img[[0, 0, 2, 2]][:, [0, 0, 2, 2]]
    np.testing.assert_array_equal(out, expected)


def test_lowres_ratio_one_is_identity_for_every_pair(face):
    for down, up in itertools.product(INTERPOLATIONS, INTERPOLATIONS):
        np.testing.assert_array_equal(low_resolution(face, 1.0, down, up), face)


def _detail_kept(out: np.ndarray, ref: np.ndarray) -> float:
    """Share of ``ref``'s fine detail (gray minus its Gaussian(σ=1) blur) still present in ``out``."""

    def high_pass(x):
        g = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64)
        return (g - cv2.GaussianBlur(g, (0, 0), 1.0)).ravel()

    a, b = high_pass(out), high_pass(ref)
    return float(a @ b / (b @ b))


def test_detail_metric_sanity(face):
    assert _detail_kept(face, face) == pytest.approx(1.0)
    assert _detail_kept(cv2.GaussianBlur(face, (0, 0), 3.0), face) < 0.1


def test_lowres_keeps_size_and_loses_detail(face):
    aug = only(lowres_p=1.0, lowres_ratio=(0.2, 0.3))
    for seed in range(20):
        out, flags = aug(face, np.random.default_rng(seed))
        assert flags == {"crop": False, "lowres": True, "photometric": False, "flip": False}
        assert out.shape == face.shape and out.dtype == np.uint8
        assert _detail_kept(out, face) < 0.2


@pytest.mark.parametrize("down", INTERPOLATIONS)
@pytest.mark.parametrize("up", INTERPOLATIONS)
def test_lowres_every_interpolation_pair_loses_detail(face, down, up):
    out = low_resolution(face, 0.3, down, up)
    assert out.shape == face.shape
    assert _detail_kept(out, face) < 0.2


def test_lowres_non_square_and_tiny_sizes():
    img = np.full((10, 7, 3), 200, np.uint8)
    out = low_resolution(img, 0.05, cv2.INTER_AREA, cv2.INTER_CUBIC)  # 0.05*7 -> 0 -> clamped to 1 pixel
    assert out.shape == (10, 7, 3)
    assert (out == 200).all()  # a constant image stays constant


def test_lowres_draws_ratio_and_both_interpolations_uniformly():
    aug = only(lowres_p=1.0)
    rng = np.random.default_rng(3)
    draws = [aug.draw(rng, 112, 112).lowres for _ in range(2000)]
    ratios = np.array([d[0] for d in draws])
    assert ratios.min() >= 0.2 and ratios.max() <= 1.0
    assert stats.kstest(ratios, stats.uniform(loc=0.2, scale=0.8).cdf).pvalue > 1e-3
    for pos in (1, 2):
        counts = np.array([sum(d[pos] == k for d in draws) for k in INTERPOLATIONS])
        assert stats.chisquare(counts).pvalue > 1e-3, counts
    # down and up interpolation drawn independently: all 25 pairs occur
    assert len({(d[1], d[2]) for d in draws}) == 25


# --------------------------------------------------------------------------- photometric
def test_photometric_hand_computed_pixel():
    px = np.array([[[100, 50, 200]]], dtype=np.uint8)
    # gray = 0.2989*100 + 0.587*50 + 0.114*200 = 82.04 -> 82
    assert rgb_to_gray(px)[0, 0] == 82
    np.testing.assert_array_equal(adjust_brightness(px, 1.5)[0, 0], [150, 75, 255])  # 300 clipped
    np.testing.assert_array_equal(adjust_saturation(px, 0.5)[0, 0], [91, 66, 141])  # (x + 82) / 2
    np.testing.assert_array_equal(adjust_saturation(px, 0.0)[0, 0], [82, 82, 82])
    # one pixel: mean(gray) = 82 -> contrast 0.5 gives the same blend as saturation here
    np.testing.assert_array_equal(adjust_contrast(px, 0.5)[0, 0], [91, 66, 141])


def test_photometric_factor_one_is_identity(face):
    for fn in (adjust_brightness, adjust_contrast, adjust_saturation):
        np.testing.assert_array_equal(fn(face, 1.0), face)


def test_contrast_zero_gives_constant_mean_gray(face):
    out = adjust_contrast(face, 0.0)
    expected = int(rgb_to_gray(face).astype(np.float64).mean())
    assert (out == expected).all()


@pytest.mark.parametrize("factor", [0.0, 0.5, 0.73, 1.0, 1.21, 1.5])
def test_photometric_matches_torchvision_uint8(face, factor):
    t = torch.from_numpy(face).permute(2, 0, 1).contiguous()
    for ours, ref in [
        (adjust_brightness, TF.adjust_brightness),
        (adjust_contrast, TF.adjust_contrast),
        (adjust_saturation, TF.adjust_saturation),
    ]:
        expected = ref(t, factor).permute(1, 2, 0).numpy()
        got = ours(face, factor)
        # contrast's mean may differ in the last float bit from torch's reduction: allow 1 level
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
        assert (got != expected).mean() < 1e-3


def test_photometric_negative_factor_rejected(face):
    with pytest.raises(ValueError, match="non-negative"):
        adjust_brightness(face, -0.1)


def test_photometric_order_and_factor_ranges():
    aug = only(photometric_p=1.0)
    rng = np.random.default_rng(5)
    orders, factors = set(), []
    for _ in range(600):
        ops = aug.draw(rng, 112, 112).photometric
        orders.add(tuple(name for name, _ in ops))
        factors += [f for _, f in ops]
    assert orders == set(itertools.permutations(["brightness", "contrast", "saturation"]))
    assert 0.5 <= min(factors) and max(factors) <= 1.5


def test_photometric_strength_zero_switches_op_off(face):
    aug = only(photometric_p=1.0, brightness=0.0, contrast=0.0, saturation=0.3)
    ops = aug.draw(np.random.default_rng(0), 112, 112).photometric
    assert [name for name, _ in ops] == ["saturation"] and 0.7 <= ops[0][1] <= 1.3
    none = only(photometric_p=1.0, brightness=0.0, contrast=0.0, saturation=0.0)
    out, flags = none(face, np.random.default_rng(0))
    assert flags["photometric"]
    np.testing.assert_array_equal(out, face)


def test_photometric_applies_drawn_ops_in_order(face):
    aug = only(photometric_p=1.0)
    params = aug.draw(np.random.default_rng(11), 112, 112)
    expected = face
    for name, f in params.photometric:
        expected = {"brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation}[name](
            expected, f
        )
    out, _ = aug(face, np.random.default_rng(11))
    np.testing.assert_array_equal(out, expected)


# --------------------------------------------------------------------------- pipeline
def test_all_off_returns_untouched_copy(face):
    aug = only()
    before = face.copy()
    for seed in range(20):
        out, flags = aug(face, np.random.default_rng(seed))
        assert flags == {"crop": False, "lowres": False, "photometric": False, "flip": False}
        np.testing.assert_array_equal(out, face)
        assert out is not face
    np.testing.assert_array_equal(face, before)


def test_flip_only(face):
    out, flags = only(flip_p=1.0)(face, np.random.default_rng(0))
    assert flags["flip"]
    np.testing.assert_array_equal(out, face[:, ::-1])
    assert out.flags.c_contiguous


def test_all_on_always_applied_and_input_untouched(face):
    aug = only(crop_p=1.0, lowres_p=1.0, photometric_p=1.0, flip_p=1.0)
    before = face.copy()
    for seed in range(30):
        out, flags = aug(face, np.random.default_rng(seed))
        assert all(flags.values())
        assert out.shape == face.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(face, before)


def test_pipeline_equals_steps_in_order(face):
    aug = only(crop_p=1.0, lowres_p=1.0, photometric_p=1.0, flip_p=1.0)
    p = aug.draw(np.random.default_rng(21), 112, 112)
    x = paste_crop(face, *p.crop)
    x = low_resolution(x, *p.lowres)
    for name, f in p.photometric:
        x = {"brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation}[name](x, f)
    x = x[:, ::-1]
    out, _ = aug(face, np.random.default_rng(21))
    np.testing.assert_array_equal(out, x)


def test_flag_frequencies_match_probabilities():
    cfg = AugmentConfig(crop_p=0.2, lowres_p=0.35, photometric_p=0.1, flip_p=0.5)
    aug = AdaFaceAugment(cfg)
    rng = np.random.default_rng(99)
    n = 4000
    flags = np.array([list(aug.draw(rng, 112, 112).flags.values()) for _ in range(n)])
    for k, p in enumerate([0.2, 0.35, 0.1, 0.5]):
        sd = math.sqrt(p * (1 - p) / n)
        assert abs(flags[:, k].mean() - p) < 4 * sd, (k, flags[:, k].mean(), p)
    # independence: P(crop and flip) ~ 0.2 * 0.5
    both = (flags[:, 0] & flags[:, 3]).mean()
    assert abs(both - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n)


def test_deterministic_given_generator(face):
    aug = AdaFaceAugment(AugmentConfig(crop_p=0.7, lowres_p=0.7, photometric_p=0.7))
    outs = []
    for seed in (0, 0, 1):
        outs.append(aug(face, np.random.default_rng(seed)))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1]
    assert not np.array_equal(outs[0][0], outs[2][0]) or outs[0][1] != outs[2][1]


def test_flags_property():
    assert AugmentParams().flags == {"crop": False, "lowres": False, "photometric": False, "flip": False}
    assert AugmentParams(crop=(0, 0, 1, 1), flip=True).flags["crop"]


def test_bad_inputs(face):
    aug = AdaFaceAugment(AugmentConfig())
    with pytest.raises(ValueError, match="RGB uint8"):
        aug(face.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="RGB uint8"):
        aug(face[..., 0], np.random.default_rng(0))
    with pytest.raises(TypeError, match="AugmentConfig"):
        AdaFaceAugment({"crop_p": 0.2})
    with pytest.raises(ValueError, match="lowres_ratio"):
        AdaFaceAugment(AugmentConfig(lowres_ratio=(0.0, 1.0)))
    with pytest.raises(ValueError, match="crop"):
        AdaFaceAugment(AugmentConfig(crop_ratio=(2.0, 1.0)))
