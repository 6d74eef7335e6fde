"""Training input: the dataset over the prepared RecordIO, the train/validation split, and the loader.

Training always reads ``train.rec``: prepare converts identity folders to RecordIO first.  Per
sample (``ds[i]``):

1. decode the stored JPEG to RGB ``uint8`` (``marginlab.data.formats.decode_image``), or take it from
   the decoded cache (``cache_decoded=True``: all images decoded once into one ``uint8`` array in
   the main process, shared read-only with forked DataLoader workers);
2. augment at the stored size (112×112) with :class:`~marginlab.train.input.augment.AdaFaceAugment`, using a
   generator seeded from ``(seed, epoch, reader index)`` — so an image's augmentation depends neither
   on the number of workers nor on batch composition, and a resumed run redraws exactly the same;
3. the model-input convention of :mod:`marginlab.data.model_input` (shared with evaluation): resize
   to ``input_size`` (``cv2.INTER_AREA`` when shrinking, ``cv2.INTER_LINEAR`` when enlarging, nothing
   when equal), channel order (``"BGR"`` like the official models, or ``"RGB"``),
   ``(x / 255 - 0.5) / 0.5``, CHW ``float32``.

It returns ``dict(image=(3,S,S) float32, label=int, index=int, aug=(4,) uint8)`` where ``index`` is
the reader index (RecordIO record key − 1), the key for joining per-image quality scores, and ``aug``
the flags ``[crop, lowres, photometric, flip]``.

Epochs: call ``dataset.set_epoch(e)`` before iterating epoch ``e``. The epoch lives in shared memory,
so persistent DataLoader workers see it, and the sampler of :func:`build_loader` reads it too (the
shuffle order is a function of ``(seed, epoch)``).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from marginlab.core.config import AugmentConfig
from marginlab.train.input.augment import FLAG_NAMES, AdaFaceAugment
from marginlab.data.formats import CorruptImageError, decode_image, open_recordio
from marginlab.data.model_input import check_channel_order, normalised_chw, resize_to
from marginlab.core.device import resolve_device

__all__ = [
    "EpochSampler",
    "FaceRecordDataset",
    "ShardedBatchSampler",
    "build_loader",
    "first_identities",
    "move_batch",
    "sample_rng",
    "train_val_split",
]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation generator of one sample: ``default_rng(SeedSequence([seed, epoch, index]))``."""
    return np.random.default_rng((int(seed), int(epoch), int(index)))


# --------------------------------------------------------------------------- dataset
class FaceRecordDataset(Dataset):
    """Faces from an InsightFace RecordIO (``train.rec`` + ``train.idx``), see the module docstring.

    ``indices`` are reader indices (record key − 1) to keep, e.g. from :func:`train_val_split`;
    ``labels`` are those of the kept samples (from the reader's identity ranges) and ``num_classes``
    the reader's (all identities).
    """

    def __init__(
        self,
        rec_path: str | Path,
        input_size: int = 112,
        augment: AugmentConfig | None = None,
        channel_order: str = "BGR",
        indices: Sequence[int] | None = None,
        cache_decoded: bool = False,
        skip_corrupt: bool = False,
        seed: int = 0,
        *,
        max_cache_gib: float = 8.0,
    ) -> None:
        self.rec_path = Path(rec_path)
        self.reader = open_recordio(self.rec_path, skip_corrupt=skip_corrupt)
        all_labels = np.asarray(self.reader.labels, dtype=np.int64)  # identity ranges: no payload reads
        num_classes = self.reader.num_classes
        check_channel_order(channel_order)
        if not (isinstance(input_size, (int, np.integer)) and input_size > 0):
            raise ValueError(f"input_size must be a positive int, got {input_size!r}")
        if augment is not None and not isinstance(augment, AugmentConfig):
            raise TypeError(f"augment must be an AugmentConfig or None, got {type(augment).__name__}")
        self.name = str(self.rec_path)
        self.input_size = int(input_size)
        self.channel_order = channel_order
        self.augment_cfg = augment
        self.augment = AdaFaceAugment(augment) if augment is not None else None
        self.skip_corrupt = skip_corrupt
        self.seed = int(seed)
        self.num_classes = int(num_classes)
        total = len(all_labels)
        if indices is None:
            self.indices = np.arange(total, dtype=np.int64)
        else:
            self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
            bad = self.indices[(self.indices < 0) | (self.indices >= total)]
            if bad.size:
                raise IndexError(f"{self.name}: indices {bad[:5].tolist()} out of range for {total} images")
        self.labels = all_labels[self.indices]
        # The epoch is a shared-memory scalar so persistent workers see set_epoch() from the main process.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._cache: np.ndarray | None = None
        self.skipped: list[int] = []
        if cache_decoded:
            self._build_cache(max_cache_gib)

    def _encoded(self, index: int) -> bytes:
        return self.reader[index][0]

    def _source(self, index: int) -> str:
        return f"{self.rec_path} record key {int(self.reader.keys[index])}"

    # ----------------------------------------------------------------- epoch
    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws (and the sampler's shuffle) of ``epoch``."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(int(epoch))

    # ----------------------------------------------------------------- decoding
    def _decode(self, index: int) -> np.ndarray:
        return decode_image(self._encoded(index), source=self._source(index))

    def _build_cache(self, max_cache_gib: float) -> None:
        n = len(self.indices)
        cache: np.ndarray | None = None
        keep = np.ones(n, dtype=bool)
        for pos in tqdm(range(n), desc=f"decoding {self.name}", unit="img", disable=n < 20000, leave=False):
            index = int(self.indices[pos])
            try:
                img = self._decode(index)
            except CorruptImageError:
                if not self.skip_corrupt:
                    raise
                keep[pos] = False
                self.skipped.append(index)
                continue
            if cache is None:
                need = n * img.nbytes
                if need > max_cache_gib * 2**30:
                    raise MemoryError(
                        f"{self.name}: caching {n} decoded images of shape {img.shape} needs "
                        f"{need / 2**30:.1f} GiB > max_cache_gib={max_cache_gib}; use cache_decoded=False"
                    )
                cache = np.empty((n,) + img.shape, dtype=np.uint8)
                shape = img.shape
            elif img.shape != shape:
                raise ValueError(
                    f"{self._source(index)}: decoded shape {img.shape} differs from the first image's {shape}; "
                    "cache_decoded needs images of one size (use cache_decoded=False)"
                )
            cache[pos] = img
        if self.skipped:
            warnings.warn(f"{self.name}: skipped {len(self.skipped)} corrupt images: {self.skipped[:10]}", stacklevel=3)
            self.indices = self.indices[keep]
            self.labels = self.labels[keep]
            cache = cache[keep] if cache is not None else None
        if cache is None:
            cache = np.empty((0, 1, 1, 3), dtype=np.uint8)
        self._cache = cache

    def _image(self, pos: int) -> tuple[np.ndarray, int]:
        """Decoded RGB image at dataset position ``pos`` and its reader index (after corrupt handling)."""
        if self._cache is not None:
            return self._cache[pos], int(self.indices[pos])
        n = len(self.indices)
        for step in range(n):
            p = (pos + step) % n
            index = int(self.indices[p])
            try:
                return self._decode(index), index
            except CorruptImageError as err:
                if not self.skip_corrupt:
                    raise
                if index not in self.skipped:
                    self.skipped.append(index)
                    warnings.warn(f"{err}; substituting the next image (skip_corrupt=True)", stacklevel=3)
        raise RuntimeError(f"{self.name}: every image is corrupt")

    # ----------------------------------------------------------------- Dataset API
    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, pos: int) -> dict[str, Any]:
        if not -len(self) <= pos < len(self):
            raise IndexError(f"{self.name}: position {pos} out of range for {len(self)} samples")
        pos = int(pos) % len(self)
        img, index = self._image(pos)
        flags = np.zeros(len(FLAG_NAMES), dtype=np.uint8)
        if self.augment is not None:
            img, applied = self.augment(img, sample_rng(self.seed, self.epoch, index))
            flags[:] = [applied[k] for k in FLAG_NAMES]
        img = resize_to(img, self.input_size)
        label = int(self.labels[pos]) if index == int(self.indices[pos]) else self._label_of(index)
        return {
            "image": torch.from_numpy(normalised_chw(img, self.channel_order)),
            "label": label,
            "index": index,
            "aug": torch.from_numpy(flags),
        }

    def _label_of(self, index: int) -> int:
        return int(self.labels[int(np.flatnonzero(self.indices == index)[0])])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, n={len(self)}, classes={self.num_classes}, "
            f"input_size={self.input_size}, channel_order={self.channel_order}, "
            f"augment={'on' if self.augment else 'off'}, cached={self._cache is not None})"
        )


# --------------------------------------------------------------------------- split
def train_val_split(labels: np.ndarray | Sequence[int], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified hold-out for model selection: per identity, ``k_c`` images go to validation.

    ``k_c = min(n_c - 1, max(1, round(val_fraction · n_c)))`` for identities with ``n_c >= 2`` images
    (identities with a single image stay in training), chosen uniformly at random (``seed``), so each
    identity keeps at least one training image and validation covers every identity that can spare
    one. ``val_fraction = 0`` gives an empty validation set. Returns sorted ``int64`` positions into
    ``labels`` ``(train, val)``: disjoint, together all positions.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = labels.size
    all_idx = np.arange(n, dtype=np.int64)
    if val_fraction == 0.0 or n == 0:
        return all_idx, np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n), labels))  # by label, random within label
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    k = np.where(counts >= 2, np.minimum(counts - 1, np.maximum(1, np.rint(val_fraction * counts))), 0)
    rank = np.arange(n) - np.repeat(starts, counts)
    is_val = rank < np.repeat(k, counts)
    return np.sort(order[~is_val]).astype(np.int64), np.sort(order[is_val]).astype(np.int64)


def first_identities(labels: np.ndarray | Sequence[int], identities: int | None) -> np.ndarray:
    """Sorted ``int64`` positions into ``labels`` of the images of the first ``identities`` identities in label
    order (labels ``0 .. identities-1``, as prepare numbers them); every position when ``identities`` is None.

    ``train.identities`` selects a training-set size this way; :func:`train_val_split` then splits the kept
    positions, so validation holds images of the kept identities only.
    """
    labels = np.asarray(labels)
    if identities is None:
        return np.arange(labels.size, dtype=np.int64)
    if identities < 1:
        raise ValueError(f"identities must be >= 1 or None, got {identities}")
    return np.flatnonzero(labels < identities).astype(np.int64)


# --------------------------------------------------------------------------- loader
class EpochSampler(Sampler[int]):
    """Sequential or shuffled positions; the permutation is a function of ``(seed, epoch)`` only.

    The epoch comes from ``dataset.epoch`` when the dataset has one (:class:`FaceRecordDataset`: ``set_epoch``),
    otherwise from this sampler's own :meth:`set_epoch`. Resuming at epoch ``e`` therefore replays
    epoch ``e``'s order exactly.
    """

    def __init__(self, dataset: Dataset, shuffle: bool, seed: int) -> None:
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = int(seed)
        self._own_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self._own_epoch = int(epoch)

    @property
    def epoch(self) -> int:
        return int(getattr(self.dataset, "epoch", self._own_epoch))

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if not self.shuffle:
            return iter(range(n))
        perm = np.random.default_rng((self.seed, self.epoch)).permutation(n)
        return iter(perm.tolist())


class ShardedBatchSampler(Sampler[list[int]]):
    """This process's share of each global batch, for data-parallel training over ``world_size`` processes.

    Global batch ``k`` of an epoch is positions ``perm[k·B : (k+1)·B]`` of the epoch's
    :class:`EpochSampler` order (``B`` = ``global_batch``, incomplete last batch dropped); process
    ``rank`` takes the contiguous slice ``[rank·B/N, (rank+1)·B/N)`` of it. So the order and the
    composition of every global batch depend only on ``(seed, epoch)``, never on ``N``: the
    concatenation of the N shards in rank order is the one-process batch, and a run can be resumed
    with another number of processes. ``world_size = 1`` gives exactly the batches of
    ``DataLoader(batch_size=B, drop_last=True)``.
    """

    def __init__(self, sampler: EpochSampler, global_batch: int, *, rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of world_size {world_size} processes")
        if global_batch <= 0 or global_batch % world_size:
            raise ValueError(f"the global batch {global_batch} does not divide over {world_size} processes")
        self.sampler = sampler
        self.global_batch = int(global_batch)
        self.rank, self.world_size = int(rank), int(world_size)
        self.local_batch = self.global_batch // self.world_size

    def __len__(self) -> int:
        return len(self.sampler) // self.global_batch

    def __iter__(self) -> Iterator[list[int]]:
        order = np.fromiter(iter(self.sampler), dtype=np.int64, count=len(self.sampler))
        lo = self.rank * self.local_batch
        for k in range(len(self)):
            start = k * self.global_batch + lo
            yield order[start : start + self.local_batch].tolist()


def _seed_worker(worker_id: int) -> None:
    """Seed Python/NumPy in each worker from torch's per-worker seed.

    (No OpenCV call here: reconfiguring OpenCV's thread pool in a forked child can deadlock on the
    parent's pool state; :func:`build_loader` makes OpenCV sequential before the fork instead.)
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    drop_last: bool,
    num_workers: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    prefetch_factor: int | None = None,
    timeout: float = 0.0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A reproducible DataLoader: same ``seed`` and epoch → same batches for any ``num_workers``.

    - order: :class:`EpochSampler` (permutation from ``(seed, epoch)``); augmentation draws come from
      the dataset's per-sample generators, so neither depends on which worker loads a sample;
    - ``generator`` seeded with ``seed`` (fixes the workers' base seed) and a ``worker_init_fn``
      seeding ``random``/``numpy`` per worker and setting ``cv2.setNumThreads(1)``;
    - workers are persistent (``num_workers > 0``): no re-fork per epoch; the epoch reaches them
      through the dataset's shared-memory epoch (call ``loader.dataset.set_epoch(e)`` first);
    - with workers, OpenCV is switched to sequential mode (``cv2.setNumThreads(0)``) in the calling
      process before the workers fork: OpenCV's thread pool does not survive ``fork`` and a worker
      touching it can deadlock. On 2-core CPUs its threads gave no speed-up for 112×112 images, and
      the parallelism comes from the workers anyway;
    - ``timeout`` (seconds, 0 = none) turns a stuck worker into an error instead of a hang;
    - ``drop_last=True`` (training): batches come from a :class:`ShardedBatchSampler`, so with
      ``world_size`` > 1 data-parallel processes each loads its ``batch_size / world_size`` share of
      the same global batch (``batch_size`` is the global batch);
    - on CUDA: ``pin_memory=True`` and ``prefetch_factor=4`` (default 2 on CPU). Copy batches with
      ``tensor.to(device, non_blocking=True)`` (:func:`move_batch`) so the host→device copy of a
      pinned batch overlaps with compute.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    cuda = dev.type == "cuda"
    sampler = EpochSampler(dataset, shuffle=shuffle, seed=seed)
    if drop_last:
        batching: dict[str, Any] = {"batch_sampler": ShardedBatchSampler(sampler, batch_size, rank=rank,
                                                                         world_size=world_size)}
    elif world_size > 1:
        raise ValueError("a sharded loader drops the incomplete last batch (drop_last=True)")
    else:
        batching = {"batch_size": batch_size, "sampler": sampler, "drop_last": False}
    kwargs: dict[str, Any] = {
        **batching,
        "num_workers": num_workers,
        "pin_memory": cuda,
        "generator": torch.Generator().manual_seed(int(seed)),
    }
    if num_workers > 0:
        cv2.setNumThreads(0)
        kwargs.update(
            timeout=timeout,
            worker_init_fn=_seed_worker,
            persistent_workers=True,
            prefetch_factor=prefetch_factor or (4 if cuda else 2),
        )
    return DataLoader(dataset, **kwargs)


def move_batch(batch: dict[str, Any], device: torch.device | str, *, channels_last: bool = False) -> dict[str, Any]:
    """Move a batch's tensors to ``device`` with ``non_blocking=True`` (overlaps with compute when pinned)."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and key == "image" and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out
