"""Model-input transform, train/val split, the RecordIO dataset, and the loader."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from marginlab.core.config import AugmentConfig
from marginlab.train.input.datasets import (
    EpochSampler,
    FaceRecordDataset,
    build_loader,
    move_batch,
    sample_rng,
    train_val_split,
)
from marginlab.data.model_input import resize_to, to_model_input

N_ID, PER_ID, SIZE = 4, 6, 112


def _face(label: int, k: int) -> np.ndarray:
    """Deterministic RGB test image: identity colour + smooth texture, no saturated channel."""
    rng = np.random.default_rng(1000 * label + k)
    base = np.array([40 + 50 * label, 200 - 40 * label, 60 + 30 * k], dtype=np.float32)
    tex = cv2.GaussianBlur(rng.normal(0, 40, (SIZE, SIZE, 3)).astype(np.float32), (0, 0), 2.0)
    return np.clip(base + tex, 0, 255).astype(np.uint8)


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def _decode_ref(data: bytes) -> np.ndarray:
    """Independent decoder for expectations: cv2 BGR -> RGB."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def samples() -> list[tuple[bytes, int]]:
    return [(_jpeg(_face(c, k)), c) for c in range(N_ID) for k in range(PER_ID)]


@pytest.fixture(scope="module")
def rec(tmp_path_factory, samples) -> Path:
    from marginlab.data.formats import write_recordio

    path = tmp_path_factory.mktemp("rec") / "train.rec"
    info = write_recordio(path, samples)
    assert info["num_images"] == len(samples) and info["num_classes"] == N_ID
    return path


AUG_ON = AugmentConfig(crop_p=0.5, lowres_p=0.5, photometric_p=0.5, flip_p=0.5)


# --------------------------------------------------------------------------- to_model_input
def test_to_model_input_hand_computed_values():
    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[0, 0, 0] = [0, 128, 255]
    img[0, 1, 1] = [255, 255, 255]
    x = to_model_input(img, 2, "RGB")
    assert x.shape == (1, 3, 2, 2) and x.dtype == torch.float32
    # (v/255 - 0.5)/0.5: 0 -> -1, 255 -> 1, 128 -> 1/255 = 0.0039216
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), [-1.0, 1.0 / 255.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(x[0, :, 1, 1].numpy(), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(x[0, :, 0, 1].numpy(), [-1.0, -1.0, -1.0])
    # BGR reverses the channel axis only
    np.testing.assert_array_equal(to_model_input(img, 2, "BGR").numpy(), x.numpy()[:, ::-1])


def test_to_model_input_matches_formula_for_all_levels():
    levels = np.arange(256, dtype=np.uint8)
    img = np.stack([levels.reshape(16, 16)] * 3, axis=-1)[None]
    x = to_model_input(img, 16, "RGB").numpy()[0, 0]
    expected = (levels.reshape(16, 16).astype(np.float64) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(x, expected, atol=1e-6)
    assert x.min() == -1.0 and x.max() == 1.0


def test_pure_red_channel_order():
    red = np.zeros((2, 112, 112, 3), np.uint8)
    red[..., 0] = 255
    bgr = to_model_input(red, 64, "BGR")
    assert bgr.shape == (2, 3, 64, 64)
    assert torch.all(bgr[:, 2] == 1.0) and torch.all(bgr[:, :2] == -1.0)
    rgb = to_model_input(red, 64, "RGB")
    assert torch.all(rgb[:, 0] == 1.0) and torch.all(rgb[:, 1:] == -1.0)


def test_to_model_input_resizes_with_inter_area():
    img = _face(1, 2)
    x = to_model_input(img[None], 64, "RGB")
    ref = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), (ref / 255 - 0.5) / 0.5, atol=1e-6)


def test_resize_to_policy():
    img = _face(0, 0)
    assert resize_to(img, 112) is img
    np.testing.assert_array_equal(resize_to(img, 56), cv2.resize(img, (56, 56), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(resize_to(img, 128), cv2.resize(img, (128, 128), interpolation=cv2.INTER_LINEAR))


def test_to_model_input_accepts_list_of_sizes_and_empty():
    x = to_model_input([_face(0, 0), cv2.resize(_face(0, 0), (100, 100))], 64)
    assert x.shape == (2, 3, 64, 64)
    assert to_model_input([], 64).shape == (0, 3, 64, 64)


@pytest.mark.parametrize(
    "images, order, match",
    [
        (np.zeros((2, 8, 8, 3), np.float32), "BGR", "uint8"),
        (np.zeros((8, 8, 3), np.uint8), "BGR", r"\(N,H,W,3\)"),
        (np.zeros((2, 8, 8, 1), np.uint8), "BGR", r"\(N,H,W,3\)"),
        ([np.zeros((8, 8), np.uint8)], "BGR", "image 0"),
        (np.zeros((2, 8, 8, 3), np.uint8), "bgr", "channel_order"),
    ],
)
def test_to_model_input_rejects_bad_input(images, order, match):
    with pytest.raises(ValueError, match=match):
        to_model_input(images, 8, order)


# --------------------------------------------------------------------------- split
def test_train_val_split_hand_computed_counts():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1 + [3] * 2)
    rng = np.random.default_rng(0)
    perm = rng.permutation(labels.size)
    labels = labels[perm]  # shuffled positions
    train, val = train_val_split(labels, 0.2, seed=3)
    # k_c = min(n-1, max(1, round(0.2 n))): 10 -> 2, 5 -> 1, 1 -> 0 (single image stays), 2 -> 1
    assert np.bincount(labels[val], minlength=4).tolist() == [2, 1, 0, 1]
    assert np.bincount(labels[train], minlength=4).tolist() == [8, 4, 1, 1]
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(labels.size))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    assert train.dtype == np.int64 and val.dtype == np.int64


def test_train_val_split_stratified_fraction_and_seeded():
    labels = np.repeat(np.arange(50), 20)
    train, val = train_val_split(labels, 0.25, seed=1)
    assert (np.bincount(labels[val]) == 5).all()
    again, _ = train_val_split(labels, 0.25, seed=1)
    other, _ = train_val_split(labels, 0.25, seed=2)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)


def test_train_val_split_arbitrary_label_values_and_zero_fraction():
    labels = np.array([7, 7, 7, 100, 100, 5])
    _, val = train_val_split(labels, 0.4, seed=0)
    assert sorted(labels[val].tolist()) == [7, 100]
    t0, v0 = train_val_split(labels, 0.0, seed=0)
    np.testing.assert_array_equal(t0, np.arange(6))
    assert v0.size == 0


@pytest.mark.parametrize("labels, frac", [(np.zeros((2, 2), int), 0.1), (np.array([0.5, 1.5]), 0.1), (np.array([0, 1]), 1.0), (np.array([0, 1]), -0.1)])
def test_train_val_split_rejects_bad_input(labels, frac):
    with pytest.raises(ValueError):
        train_val_split(labels, frac, seed=0)


# --------------------------------------------------------------------------- sampler / rng
def test_sample_rng_is_keyed_by_seed_epoch_index():
    a = sample_rng(1, 2, 3).random(4)
    np.testing.assert_array_equal(a, sample_rng(1, 2, 3).random(4))
    for other in [(0, 2, 3), (1, 3, 3), (1, 2, 4)]:
        assert not np.array_equal(a, sample_rng(*other).random(4))


class _Plain(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return i


def test_epoch_sampler_orders():
    ds = _Plain()
    assert list(EpochSampler(ds, shuffle=False, seed=0)) == list(range(10))
    s = EpochSampler(ds, shuffle=True, seed=5)
    e0 = list(s)
    assert sorted(e0) == list(range(10)) and e0 == list(s)
    s.set_epoch(1)
    assert list(s) != e0
    assert list(EpochSampler(ds, shuffle=True, seed=6)) != e0
    assert len(s) == 10


# --------------------------------------------------------------------------- datasets
def test_record_dataset_outputs(rec, samples):
    ds = FaceRecordDataset(rec, input_size=64, augment=None)
    assert len(ds) == len(samples) and ds.num_classes == N_ID
    np.testing.assert_array_equal(ds.labels, [label for _, label in samples])
    item = ds[7]
    assert set(item) == {"image", "label", "index", "aug"}
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["label"] == samples[7][1] and item["index"] == 7
    assert item["aug"].dtype == torch.uint8 and item["aug"].tolist() == [0, 0, 0, 0]
    expected = to_model_input(_decode_ref(samples[7][0])[None], 64, "BGR")[0]
    torch.testing.assert_close(item["image"], expected, rtol=0, atol=0)
    assert ds[-1]["index"] == len(samples) - 1
    with pytest.raises(IndexError):
        ds[len(samples)]


def test_record_dataset_red_image_bgr(tmp_path):
    from marginlab.data.formats import write_recordio

    red = np.zeros((SIZE, SIZE, 3), np.uint8)
    red[..., 0] = 255
    path = tmp_path / "red.rec"
    write_recordio(path, [(_jpeg(red), 0), (_jpeg(red), 1)])
    x = FaceRecordDataset(path, input_size=112, channel_order="BGR")[0]["image"]
    assert x[2].mean() > 0.95 and x[0].mean() < -0.95 and x[1].mean() < -0.95
    x = FaceRecordDataset(path, input_size=112, channel_order="RGB")[0]["image"]
    assert x[0].mean() > 0.95 and x[2].mean() < -0.95


def test_indices_subset_keeps_reader_index_and_augmentation(rec, samples):
    full = FaceRecordDataset(rec, input_size=64, augment=AUG_ON, seed=3)
    idx = [20, 3, 11]
    sub = FaceRecordDataset(rec, input_size=64, augment=AUG_ON, seed=3, indices=idx)
    assert len(sub) == 3 and sub.num_classes == N_ID
    np.testing.assert_array_equal(sub.labels, [samples[i][1] for i in idx])
    for k, i in enumerate(idx):
        a, b = sub[k], full[i]
        assert a["index"] == i and a["label"] == samples[i][1]
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
        assert a["aug"].tolist() == b["aug"].tolist()
    with pytest.raises(IndexError, match="out of range"):
        FaceRecordDataset(rec, input_size=64, indices=[0, len(samples)])


def test_cache_decoded_equals_uncached(rec):
    a = FaceRecordDataset(rec, input_size=64, augment=AUG_ON, seed=1, indices=range(0, 24, 2))
    b = FaceRecordDataset(rec, input_size=64, augment=AUG_ON, seed=1, indices=range(0, 24, 2), cache_decoded=True)
    assert b._cache is not None and b._cache.shape == (12, SIZE, SIZE, 3)
    for epoch in (0, 2):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for i in range(len(a)):
            x, y = a[i], b[i]
            torch.testing.assert_close(x["image"], y["image"], rtol=0, atol=0)
            assert x["aug"].tolist() == y["aug"].tolist() and x["index"] == y["index"]


def test_epoch_changes_augmentation_reproducibly(rec):
    ds = FaceRecordDataset(rec, input_size=64, augment=AugmentConfig(crop_p=1.0, flip_p=0.5), seed=0)
    first = [ds[i]["image"] for i in range(4)]
    again = [ds[i]["image"] for i in range(4)]
    ds.set_epoch(1)
    assert ds.epoch == 1
    later = [ds[i]["image"] for i in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not all(torch.equal(x, y) for x, y in zip(first, later))
    other_seed = FaceRecordDataset(rec, input_size=64, augment=AugmentConfig(crop_p=1.0), seed=9)
    assert not all(torch.equal(first[i], other_seed[i]["image"]) for i in range(4))
    with pytest.raises(ValueError):
        ds.set_epoch(-1)


def test_augmentation_flag_frequencies(rec):
    cfg = AugmentConfig(crop_p=0.2, lowres_p=0.2, photometric_p=0.2, flip_p=0.5)
    ds = FaceRecordDataset(rec, input_size=32, augment=cfg, cache_decoded=True)
    flags = []
    for epoch in range(25):
        ds.set_epoch(epoch)
        flags += [ds[i]["aug"].numpy() for i in range(len(ds))]
    freq = np.mean(flags, axis=0)  # 600 draws: sd 0.016 (p=0.2), 0.020 (p=0.5)
    np.testing.assert_allclose(freq, [0.2, 0.2, 0.2, 0.5], atol=0.07)


def test_corrupt_image_errors_and_skips(tmp_path, samples):
    from marginlab.data.formats import CorruptImageError, write_recordio

    path = tmp_path / "bad.rec"
    data = [samples[0], (b"not a jpeg at all", 0), samples[6], samples[7]]
    data = [(d, 0 if i < 2 else 1) for i, (d, _) in enumerate(data)]
    write_recordio(path, data)
    ds = FaceRecordDataset(path, input_size=64)
    with pytest.raises(CorruptImageError, match="record key 2"):
        ds[1]
    skip = FaceRecordDataset(path, input_size=64, skip_corrupt=True)
    with pytest.warns(UserWarning, match="substituting"):
        item = skip[1]
    assert item["index"] == 2 and item["label"] == 1  # the next readable image, with its own label
    with pytest.raises(CorruptImageError):
        FaceRecordDataset(path, input_size=64, cache_decoded=True)
    with pytest.warns(UserWarning, match="skipped 1 corrupt"):
        cached = FaceRecordDataset(path, input_size=64, cache_decoded=True, skip_corrupt=True)
    assert len(cached) == 3 and cached.skipped == [1]
    assert [cached[i]["index"] for i in range(3)] == [0, 2, 3]
    np.testing.assert_array_equal(cached.labels, [0, 1, 1])


def test_cache_memory_guard(rec):
    with pytest.raises(MemoryError, match="cache_decoded=False"):
        FaceRecordDataset(rec, input_size=64, cache_decoded=True, max_cache_gib=1e-6)


def test_dataset_rejects_bad_arguments(rec):
    with pytest.raises(ValueError, match="channel_order"):
        FaceRecordDataset(rec, input_size=64, channel_order="bgr")
    with pytest.raises(ValueError, match="input_size"):
        FaceRecordDataset(rec, input_size=0)
    with pytest.raises(TypeError, match="AugmentConfig"):
        FaceRecordDataset(rec, input_size=64, augment={"crop_p": 0.2})


# --------------------------------------------------------------------------- loader
def _epochs(loader, epochs):
    out = []
    for e in epochs:
        loader.dataset.set_epoch(e)
        out.append([{k: v.clone() for k, v in b.items()} for b in loader])
    return out


def test_loader_same_batches_for_0_and_2_workers(rec):
    def make(workers):
        ds = FaceRecordDataset(rec, input_size=32, augment=AUG_ON, seed=2, cache_decoded=True)
        return build_loader(ds, 5, shuffle=True, drop_last=True, num_workers=workers, device="cpu", seed=11, timeout=60)

    ref = _epochs(make(0), [0, 1])
    par = _epochs(make(2), [0, 1])  # persistent workers: the epoch must reach them via shared memory
    assert len(ref[0]) == 24 // 5  # drop_last
    for ep_ref, ep_par in zip(ref, par):
        for a, b in zip(ep_ref, ep_par):
            assert a.keys() == b.keys() == {"image", "label", "index", "aug"}
            for k in a:
                torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert ref[0][0]["image"].shape == (5, 3, 32, 32)
    assert ref[0][0]["label"].dtype == torch.int64 and ref[0][0]["aug"].shape == (5, 4)
    # a new epoch reshuffles and redraws augmentations
    order0 = torch.cat([b["index"] for b in ref[0]])
    order1 = torch.cat([b["index"] for b in ref[1]])
    assert not torch.equal(order0, order1)


def test_loader_without_shuffle_keeps_order(rec):
    ds = FaceRecordDataset(rec, input_size=32)
    batches = list(build_loader(ds, 10, shuffle=False, drop_last=False, num_workers=0, device="cpu", seed=0))
    assert [len(b["index"]) for b in batches] == [10, 10, 4]
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(24))
    loader = build_loader(ds, 10, shuffle=False, drop_last=False, num_workers=1, device="cpu", seed=0, timeout=60)
    assert loader.persistent_workers and not loader.pin_memory and loader.prefetch_factor == 2
    assert cv2.getNumThreads() == 1  # OpenCV made sequential before workers fork (0 -> reports 1)
    assert torch.cat([b["index"] for b in loader]).tolist() == list(range(24))


def test_build_loader_rejects_bad_arguments(rec):
    ds = FaceRecordDataset(rec, input_size=32)
    with pytest.raises(ValueError, match="batch_size"):
        build_loader(ds, 0, shuffle=False, drop_last=False, num_workers=0, device="cpu", seed=0)
    with pytest.raises(ValueError, match="num_workers"):
        build_loader(ds, 4, shuffle=False, drop_last=False, num_workers=-1, device="cpu", seed=0)


def test_move_batch_channels_last():
    batch = {"image": torch.zeros(2, 3, 4, 4), "label": torch.tensor([1, 2]), "meta": "x"}
    moved = move_batch(batch, "cpu", channels_last=True)
    assert moved["image"].is_contiguous(memory_format=torch.channels_last)
    assert moved["meta"] == "x" and torch.equal(moved["label"], batch["label"])
