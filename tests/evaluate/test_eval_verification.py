"""10-fold verification accuracy and VAL@FAR: hand-worked cases, fold boundaries, an independent reference."""

import numpy as np
import pytest
from sklearn.model_selection import KFold

from marginlab.evaluate import accuracy_from_distances, fold_slices, pair_distances, ten_fold_accuracy, val_far_from_distances
from marginlab.evaluate.verification import _threshold_at_far


def embeddings_with_distances(dist):
    """Unit vectors in 2-D whose pairwise squared L2 distances are ``dist`` (d = 2 - 2 cos θ)."""
    d = np.asarray(dist, dtype=np.float64)
    theta = np.arccos(1.0 - d / 2.0)
    e1 = np.tile([1.0, 0.0], (len(d), 1))
    e2 = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return e1, e2


def test_embedding_helper_gives_requested_distances():
    d = [0.0, 0.305, 1.005, 2.0, 3.99]
    e1, e2 = embeddings_with_distances(d)
    np.testing.assert_allclose(pair_distances(e1, e2), d, atol=1e-12)


@pytest.mark.parametrize("n", [10, 11, 12, 19, 20, 6000, 7001])
def test_fold_slices_match_sklearn_kfold(n):
    ours = [np.arange(n)[s] for s in fold_slices(n)]
    theirs = [test for _, test in KFold(n_splits=10, shuffle=False).split(np.arange(n))]
    assert len(ours) == 10
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


def test_fold_slices_sizes_by_hand():
    # 12 pairs: the first two folds get the extra pair.
    assert [(s.start, s.stop) for s in fold_slices(12)] == [(0, 2), (2, 4)] + [(i, i + 1) for i in range(4, 12)]
    with pytest.raises(ValueError, match="at least 10 pairs"):
        fold_slices(9)


def test_outlier_pair_lands_in_the_second_fold_when_n_is_not_divisible():
    # 12 pairs; folds are [0,1], [2,3], [4], ..., [11].
    # same pairs at d=0.305 (0,1,3,4,5,6); impostors at d=1.005 (7..11) and one look-alike impostor at d=0.205 (2).
    # On every training set the best thresholds are 0.31..1.00 (only pair 2 wrong, or none): first max 0.31.
    # Held-out fold [2,3]: pair 2 accepted (wrong), pair 3 right -> 0.5; every other fold -> 1.0.
    dist = np.full(12, 0.305)
    dist[7:] = 1.005
    dist[2] = 0.205
    same = np.ones(12, bool)
    same[7:] = False
    same[2] = False
    out = ten_fold_accuracy(*embeddings_with_distances(dist), same)
    assert out["fold_accuracies"] == pytest.approx([1.0, 0.5] + [1.0] * 8)
    assert out["fold_thresholds"] == pytest.approx([0.31] * 10)
    assert out["accuracy_mean"] == pytest.approx(0.95)
    assert out["accuracy_std"] == pytest.approx(0.15)  # population std of nine 1.0 and one 0.5
    assert out["threshold_mean"] == pytest.approx(0.31)
    assert out["pairs"] == 12


def test_threshold_ties_first_maximum_wins_per_fold():
    # 10 pairs, one per fold.
    # 0: same d=.405   1: impostor d=.605   2: same d=.805   3-5: same d=.105   6-9: impostor d=1.505
    # All data: plateaus 0.41-0.60 and 0.81-1.50 both have 9/10 correct.
    # fold 0 (without pair 0): 0.11-0.60 and 0.81-1.50 tie at 8/9 -> 0.11; pair 0 (d=.405) rejected -> 0
    # fold 1 (without pair 1): 0.81-1.50 is perfect -> 0.81; pair 1 (d=.605) accepted -> 0
    # fold 2 (without pair 2): 0.41-0.60 is perfect -> 0.41; pair 2 (d=.805) rejected -> 0
    # folds 3-9: 0.41-0.60 and 0.81-1.50 tie at 8/9 -> 0.41; easy pair right -> 1
    dist = np.array([0.405, 0.605, 0.805, 0.105, 0.105, 0.105, 1.505, 1.505, 1.505, 1.505])
    same = np.array([1, 0, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    out = ten_fold_accuracy(*embeddings_with_distances(dist), same)
    assert out["fold_thresholds"] == pytest.approx([0.11, 0.81, 0.41] + [0.41] * 7)
    assert out["fold_accuracies"] == pytest.approx([0, 0, 0] + [1] * 7)
    assert out["accuracy_mean"] == pytest.approx(0.7)
    assert out["accuracy_std"] == pytest.approx(np.sqrt(0.21))
    assert out["threshold_mean"] == pytest.approx(0.42)


def test_separable_pairs_pick_the_lowest_perfect_threshold():
    dist = np.r_[np.full(10, 0.505), np.full(10, 1.505)]
    same = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    out = accuracy_from_distances(dist, same)
    assert out["accuracy_mean"] == 1.0 and out["accuracy_std"] == 0.0
    assert out["threshold_mean"] == pytest.approx(0.51)


def test_strict_inequality_at_the_threshold():
    # A genuine distance exactly on a grid threshold is only accepted by the next threshold.
    thresholds = np.array([0.0, 0.5, 1.0])
    dist = np.r_[np.full(10, 0.5), np.full(10, 2.0)]
    same = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    out = accuracy_from_distances(dist, same, thresholds=thresholds)
    assert out["fold_thresholds"] == [1.0] * 10
    assert out["accuracy_mean"] == 1.0


def reference_ten_fold(dist, same):
    """Straightforward loops in the style of the InsightFace/LFW evaluation code."""
    thresholds = np.arange(0, 4, 0.01)
    accs, thrs = [], []
    for train, test in KFold(n_splits=10, shuffle=False).split(np.arange(len(dist))):
        train_acc = np.zeros(len(thresholds))
        for i, t in enumerate(thresholds):
            correct = 0
            for j in train:
                correct += int((dist[j] < t) == same[j])
            train_acc[i] = correct / len(train)
        best = int(np.argmax(train_acc))
        thrs.append(thresholds[best])
        accs.append(sum(int((dist[j] < thresholds[best]) == same[j]) for j in test) / len(test))
    return np.mean(accs), np.std(accs), np.mean(thrs), accs


def test_random_embeddings_agree_with_loop_reference():
    rng = np.random.default_rng(7)
    n, dim = 203, 16  # not divisible by 10
    e1 = rng.normal(size=(n, dim))
    same = rng.random(n) < 0.5
    e2 = np.where(same[:, None], e1 + rng.normal(scale=0.9, size=(n, dim)), rng.normal(size=(n, dim)))
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 /= np.linalg.norm(e2, axis=1, keepdims=True)
    out = ten_fold_accuracy(e1.astype(np.float32), e2.astype(np.float32), same)
    dist = np.sum((e1.astype(np.float32).astype(np.float64) - e2.astype(np.float32)) ** 2, axis=1)
    mean, std, thr, accs = reference_ten_fold(dist, same)
    assert out["fold_accuracies"] == pytest.approx(accs)
    assert out["accuracy_mean"] == pytest.approx(mean)
    assert out["accuracy_std"] == pytest.approx(std)
    assert out["threshold_mean"] == pytest.approx(thr)
    assert 0.6 < out["accuracy_mean"] < 1.0  # informative but imperfect data


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e1, e2, s: (e1 * 2, e2, s), "L2-normalised"),
        (lambda e1, e2, s: (e1[:-1], e2, s), "same shape"),
        (lambda e1, e2, s: (e1, e2, s[:-1]), "one per pair"),
        (lambda e1, e2, s: (e1[:, 0], e2[:, 0], s), "2-D"),
        (lambda e1, e2, s: (np.where(np.arange(len(e1))[:, None] == 0, np.nan, e1), e2, s), "NaN"),
        (lambda e1, e2, s: (e1, e2, s.astype(int) * 2), "boolean"),
        (lambda e1, e2, s: (e1[:9], e2[:9], s[:9]), "at least 10 pairs"),
    ],
)
def test_bad_inputs_raise_clear_errors(mutate, message):
    e1, e2 = embeddings_with_distances(np.linspace(0.1, 2.0, 12))
    same = np.arange(12) % 2 == 0
    with pytest.raises(ValueError, match=message):
        ten_fold_accuracy(*mutate(e1, e2, same))


def test_integer_issame_is_accepted():
    dist = np.r_[np.full(10, 0.505), np.full(10, 1.505)]
    e1, e2 = embeddings_with_distances(dist)
    out = ten_fold_accuracy(e1, e2, np.r_[np.ones(10, int), np.zeros(10, int)])
    assert out["accuracy_mean"] == 1.0


# --------------------------------------------------------------------------- VAL@FAR
def test_threshold_at_far_interpolates_the_far_curve():
    thr = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    curve = np.array([0.0, 0.0, 0.2, 0.6, 1.0])
    assert _threshold_at_far(curve, thr, 0.4) == pytest.approx(2.5)  # halfway between (2, .2) and (3, .6)
    assert _threshold_at_far(curve, thr, 0.2) == pytest.approx(2.0)  # exactly on a grid point
    assert _threshold_at_far(curve, thr, 0.0) == pytest.approx(1.0)  # largest threshold with FAR 0
    assert _threshold_at_far(np.array([0.0, 0.2, 0.2, 0.6]), thr[:4], 0.2) == pytest.approx(2.0)  # end of plateau
    assert _threshold_at_far(np.array([0.0, 0.1, 0.3, 0.6]), thr[:4], 0.8) == 0.0  # never reached: InsightFace's 0


def test_val_far_by_hand():
    # 20 pairs, folds of two (same d=0.2, impostor). Impostor of fold 0 at d=1.0, all others at 2.0.
    # Folds 1-9: training impostors {1.0, 2.0 x8} -> threshold just above 1.0 -> held-out impostor (2.0) rejected.
    # Fold 0: training impostors all 2.0 -> threshold just above 2.0 -> held-out impostor (1.0) accepted.
    dist = np.tile([0.2, 2.0], 10)
    dist[1] = 1.0
    same = np.tile([True, False], 10)
    out = val_far_from_distances(dist, same, 1e-3)
    assert out["val_mean"] == 1.0 and out["val_std"] == 0.0
    assert out["far_mean"] == pytest.approx(0.1)
    e1, e2 = embeddings_with_distances(dist)
    assert ten_fold_accuracy(e1, e2, same)["val_at_far"]["far_mean"] == pytest.approx(0.1)


def test_val_far_is_none_when_a_fold_lacks_impostors():
    dist = np.linspace(0.1, 2.0, 20)
    same = np.ones(20, bool)
    same[:10] = False  # folds 5-9 hold genuine pairs only
    assert val_far_from_distances(dist, same) is None
    assert ten_fold_accuracy(*embeddings_with_distances(dist), same, far_target=None).keys() >= {"accuracy_mean"}
