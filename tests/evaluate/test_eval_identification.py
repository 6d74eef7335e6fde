"""Closed-set identification: ranks and CMC on a hand-made similarity matrix with distractors."""

import numpy as np
import pytest

from marginlab.evaluate import cmc, identification_rates, match_ranks, match_ranks_from_features

GALLERY = np.array([0, 1, 2, -1, -1, 0])  # identity 0 has two gallery images; two distractors
PROBES = np.array([0, 1, 2, 2, 7])
SCORES = np.array(
    [
        [0.5, 0.9, 0.1, 0.6, 0.2, 0.7],  # best genuine 0.7 (2nd image of id 0); id 1 scores 0.9 -> rank 2
        [0.1, 0.8, 0.3, 0.2, 0.4, 0.0],  # genuine 0.8 is the top score -> rank 1
        [0.9, 0.8, 0.3, 0.7, 0.6, 0.5],  # genuine 0.3 below five others (incl. both distractors) -> rank 6
        [0.4, 0.1, 0.4, 0.1, 0.4, 0.0],  # genuine 0.4 tied with id 0 and a distractor: ties count against -> rank 3
        [0.9, 0.9, 0.9, 0.9, 0.9, 0.9],  # identity 7 is not in the gallery -> not scored (rank 0)
    ]
)


def test_match_ranks_by_hand():
    np.testing.assert_array_equal(match_ranks(SCORES, PROBES, GALLERY), [2, 1, 6, 3, 0])


def test_cmc_by_hand():
    ranks = np.array([2, 1, 6, 3, 0])
    assert cmc(ranks, [1, 5, 6, 10]) == {1: 0.25, 5: 0.75, 6: 1.0, 10: 1.0}


def test_a_distractor_above_the_genuine_match_costs_rank_one():
    scores = np.array([[0.8, 0.1]])
    assert match_ranks(scores, [0], [0, -1])[0] == 1
    assert match_ranks(np.array([[0.8, 0.85]]), [0], [0, -1])[0] == 2


def test_identification_rates_from_two_dimensional_features():
    # Unit vectors at angles (degrees); inner product = cos(angle difference).
    def unit(deg):
        r = np.deg2rad(np.asarray(deg, dtype=float))
        return np.stack([np.cos(r), np.sin(r)], axis=1)

    gallery = unit([0, 90, 180, 10])  # ids 0, 1, 2 and a distractor at 10 degrees
    labels = np.array([0, 1, 2, -1])
    probes = unit([3, 80, 120])  # id 0 near 0 (distractor at 7 deg away is farther); id 1 near 90; id 2 at 120
    # probe id 2 at 120 deg: cos to 180 = cos 60 = .5, to 90 = cos 30 = .87 -> id 1 ranks ahead -> rank 2
    out = identification_rates(probes, [0, 1, 2], gallery, labels, ranks=[1, 2])
    assert out == {"rank1": pytest.approx(2 / 3), "rank2": 1.0, "probes": 3, "probes_without_match": 0, "gallery": 4, "distractors": 1}
    probes2 = unit([8])  # now nearer the distractor (2 deg) than its identity (8 deg)
    assert identification_rates(probes2, [0], gallery, labels, ranks=[1])["rank1"] == 0.0


def test_chunked_ranks_equal_full_matrix_ranks():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(300, 8)).astype(np.float32)
    gl = np.r_[np.arange(100).repeat(2), np.full(100, -1)]
    p = g[:200:2] + rng.normal(scale=1.0, size=(100, 8)).astype(np.float32)
    pl = np.arange(100)
    full = match_ranks(p @ g.T, pl, gl)
    chunked = match_ranks_from_features(p, pl, g, gl, max_entries=1000)  # 3 probes per chunk
    np.testing.assert_array_equal(full, chunked)
    assert 1 < full.max() and full.min() == 1


def test_errors():
    with pytest.raises(ValueError, match="distractor label"):
        match_ranks_from_features(np.ones((1, 2)), [-1], np.ones((2, 2)), [0, -1])
    with pytest.raises(ValueError, match="no probe has a matching identity"):
        cmc([0, 0], [1])
    with pytest.raises(ValueError, match="ranks must be >= 1"):
        cmc([1], [0])
    with pytest.raises(ValueError, match=r"\(probes, gallery\)"):
        match_ranks(SCORES[:, :3], PROBES, GALLERY)
    with pytest.raises(ValueError, match="one entry per feature row"):
        match_ranks_from_features(np.ones((2, 2)), [0], np.ones((2, 2)), [0, 1])
