"""IJB-style 1:1: TAR@FAR on hand-made score lists, supported FARs, template fusion modes, ROC data."""

import numpy as np
import pandas as pd
import pytest

from marginlab.evaluate import evaluate_templates, far_key, fuse_templates, roc_points, supported_fars, tar_at_far, template_pair_scores

# 4 genuine and 10 impostor scores, all distinct. ROC (drop_intermediate=False), by falling threshold:
#   thr   inf  .9   .85  .8   .7   .6   .5   .4   .3   .2   .1   .05  0   -.1  -.2
#   fpr   0    0    .1   .1   .1   .2   .3   .4   .4   .5   .6   .7   .8   .9   1
#   tpr   0    .25  .25  .5   .75  .75  .75  .75  1    1    1    1    1    1    1
GENUINE = [0.9, 0.8, 0.7, 0.3]
IMPOSTOR = [0.85, 0.6, 0.5, 0.4, 0.2, 0.1, 0.05, 0.0, -0.1, -0.2]
SCORES = np.array(GENUINE + IMPOSTOR)
LABELS = np.array([1] * 4 + [0] * 10)


@pytest.mark.parametrize(
    "far, tar",
    [
        (1e-4, 0.25),  # nearest FPR is 0: points (0, 0) and (0, .25) tie -> highest TPR
        (0.1, 0.75),  # three ROC points at FPR .1 (TPR .25, .5, .75) -> .75
        (0.3, 0.75),  # exactly on a point
        (0.33, 0.75),  # between FPR .3 and .4, nearer .3
        (0.37, 1.0),  # between FPR .3 and .4, nearer .4 where the vertical run ends at TPR 1
        (0.55 + 0.01, 1.0),
        (1.0, 1.0),
    ],
)
def test_tar_at_far_by_hand(far, tar):
    assert tar_at_far(SCORES, LABELS, [far])[far] == pytest.approx(tar)


def test_tar_at_far_is_invariant_to_pair_order_and_returns_every_far():
    perm = np.random.default_rng(0).permutation(len(SCORES))
    fars = [1e-4, 0.1, 0.33, 0.37]
    assert tar_at_far(SCORES[perm], LABELS[perm].astype(bool), fars) == tar_at_far(SCORES, LABELS, fars)
    assert list(tar_at_far(SCORES, LABELS, fars)) == fars


def test_insightface_mode_drops_intermediate_points():
    # With sklearn's default drop_intermediate the corner (.3, .75) of the horizontal run is gone,
    # so FAR .3 is read at FPR .4 (TPR 1): the reason the default here keeps every point.
    assert tar_at_far(SCORES, LABELS, [0.3], drop_intermediate=True)[0.3] == pytest.approx(1.0)
    assert tar_at_far(SCORES, LABELS, [0.3])[0.3] == pytest.approx(0.75)


def test_tar_at_far_errors():
    with pytest.raises(ValueError, match="both genuine and impostor"):
        tar_at_far([0.1, 0.2], [1, 1], [0.1])
    with pytest.raises(ValueError, match=r"FAR values must be in \(0, 1\]"):
        tar_at_far(SCORES, LABELS, [0.0])
    with pytest.raises(ValueError, match="0/1"):
        tar_at_far(SCORES, LABELS * 2, [0.1])
    with pytest.raises(ValueError, match="equal length"):
        tar_at_far(SCORES[:-1], LABELS, [0.1])
    with pytest.raises(ValueError, match="NaN"):
        tar_at_far(np.r_[np.nan, SCORES[1:]], LABELS, [0.1])


def test_supported_fars():
    assert supported_fars(10, [1e-3, 0.1, 0.5]) == [0.1, 0.5]
    assert supported_fars(10_000, [1e-6, 1e-5, 1e-4, 1e-3]) == [1e-4, 1e-3]  # 10,000 * 1e-4 = 1 impostor
    assert supported_fars(0, [0.1]) == []
    with pytest.raises(ValueError):
        supported_fars(-1, [0.1])


def test_far_key_format():
    assert [far_key(f) for f in (1e-6, 1e-4, 1e-1)] == ["1e-06", "1e-04", "1e-01"]
    assert [far_key(f) for f in (0.25, 0.2, 3e-5)] == ["2.5e-01", "2e-01", "3e-05"]  # distinct, exact


# --------------------------------------------------------------------------- fusion
def test_norm_fusion_barely_moves_for_a_low_norm_image_but_mean_fusion_does():
    feats = np.array([[10.0, 0.0], [0.0, 0.1]])  # a sharp image and a poor one, separate media
    tids, norm = fuse_templates(feats, [1, 1], [1, 2], mode="norm")
    _, mean = fuse_templates(feats, [1, 1], [1, 2], mode="mean")
    assert tids.tolist() == [1]
    np.testing.assert_allclose(norm[0], np.array([10.0, 0.1]) / np.hypot(10.0, 0.1))
    assert norm[0, 0] > 0.9999  # the poor image moves the template by ~0.57 degrees
    np.testing.assert_allclose(mean[0], [np.sqrt(0.5), np.sqrt(0.5)])  # equal say for both images


def test_media_are_averaged_then_summed():
    # Template 7: media 5 has two frames (2,0) and (0,2) -> average (1,1); media 6 has (0,4).
    # Sum (1,5), normalised. Summing all images instead would give (2,6).
    feats = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    _, t = fuse_templates(feats, [7, 7, 7], [5, 5, 6], mode="norm")
    np.testing.assert_allclose(t[0], np.array([1.0, 5.0]) / np.sqrt(26.0))


def test_same_media_id_in_two_templates_are_separate_groups():
    feats = np.array([[1.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    tids, t = fuse_templates(feats, [2, 1, 2], [9, 9, 9])
    assert tids.tolist() == [1, 2]
    np.testing.assert_allclose(t, [[0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)]])


def test_detector_fusion_weights_by_score():
    feats = np.array([[1.0, 0.0], [0.0, 1.0]])
    _, t = fuse_templates(feats, [1, 1], [1, 2], mode="detector", detector_scores=[0.1, 0.9])
    np.testing.assert_allclose(t[0], np.array([0.1, 0.9]) / np.hypot(0.1, 0.9))
    with pytest.raises(ValueError, match="needs detector_scores"):
        fuse_templates(feats, [1, 1], [1, 2], mode="detector")
    with pytest.raises(ValueError, match="unknown fusion mode"):
        fuse_templates(feats, [1, 1], [1, 2], mode="max")


def test_template_pair_scores_are_dot_products():
    tids = np.array([3, 1, 2])
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)]])
    s = template_pair_scores(tids, feats, [3, 1, 2, 3], [1, 2, 2, 3], chunk=2)
    np.testing.assert_allclose(s, [0.0, np.sqrt(0.5), 1.0, 1.0])
    with pytest.raises(KeyError, match=r"tid2 names 1 template id\(s\) without images, e.g. \[99\]"):
        template_pair_scores(tids, feats, [3], [99])


def test_evaluate_templates_end_to_end():
    # Two identities, two templates each; identity A's templates agree, B's are orthogonal-ish.
    faces = pd.DataFrame({"tid": [1, 1, 2, 3, 4], "mid": [1, 2, 3, 4, 5], "score": [1.0] * 5})
    feats = np.array([[1.0, 0.0, 0.0], [2.0, 0.1, 0.0], [1.0, 0.05, 0.0], [0.0, 1.0, 0.0], [0.0, 0.3, 1.0]])
    pairs = pd.DataFrame({"tid1": [1, 3, 1, 1, 2, 2], "tid2": [2, 4, 3, 4, 3, 4], "label": [1, 1, 0, 0, 0, 0]})
    metrics, roc = evaluate_templates(feats, faces, pairs, fusion="mean", fars=[0.25, 0.5])
    assert metrics["fusion"] == "mean"
    assert metrics["templates"] == 4 and metrics["pairs"] == 6
    assert (metrics["genuine"], metrics["impostor"]) == (2, 4)
    assert metrics["supported_fars"] == ["2.5e-01", "5e-01"]  # 4 impostors: 4 * 0.25 = 1
    # mean fusion scores: genuine (1,2) ~0.9996 and (3,4) ~0.287; impostors (1,3) ~0.025, (1,4) ~0.007,
    # (2,3) ~0.050, (2,4) ~0.014: every genuine pair beats every impostor -> TPR 1 from FPR 0 on.
    assert metrics["tar_at_far"] == {far_key(0.25): 1.0, far_key(0.5): 1.0}
    assert list(roc.columns) == ["fpr", "tpr", "threshold"]
    with pytest.raises(ValueError, match="one row per face"):
        evaluate_templates(feats[:-1], faces, pairs)


# --------------------------------------------------------------------------- ROC
def test_roc_points_small_curve_is_complete_and_large_one_downsampled():
    roc = roc_points(SCORES, LABELS)
    assert roc["fpr"].iloc[0] == 0.0 and roc["fpr"].iloc[-1] == 1.0 and roc["tpr"].iloc[-1] == 1.0
    rng = np.random.default_rng(1)
    n = 60_000
    labels = rng.random(n) < 0.3
    scores = rng.normal(size=n) + 1.5 * labels
    big = roc_points(scores, labels, max_points=500)
    assert len(big) <= 500
    assert big["fpr"].is_monotonic_increasing and big["tpr"].is_monotonic_increasing
    assert big["fpr"].iloc[0] == 0.0 and big["fpr"].iloc[-1] == 1.0
    assert (big["fpr"] < 1e-3).sum() >= 20  # the low-FAR region is kept for log-scale plots
    with pytest.raises(ValueError, match="max_points"):
        roc_points(SCORES, LABELS, max_points=2)
