"""Which synthetic images exist: identity blocks, quality policies and the image specs of every split.

Pure bookkeeping, no pixels: an :class:`ImageSpec` names an image's random stream (split, identity,
image), its quality policy and its framing; :mod:`.generator` renders it.  The splits are described
in the package docstring (:mod:`marginlab.data.synthetic`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from marginlab.core.config import SyntheticConfig
from marginlab.data.synthetic.degrade import DEGRADATION_TYPES, QualityPolicy, policy_from_mix
from marginlab.data.synthetic.faces import FAMILY_SIZE, rng_for

__all__ = [
    "IJB_NAME",
    "MAX_IJB_IMPOSTORS",
    "TINYFACE_GALLERY",
    "TINYFACE_PROBES",
    "VERIFICATION_BINS",
    "IJBLayout",
    "ImageSpec",
    "identity_blocks",
    "ijb_layout",
    "quality_policies",
    "tinyface_specs",
    "train_specs",
    "verification_pairs",
    "verification_specs",
]

IJB_NAME = "ijb_syn"
MAX_IJB_IMPOSTORS = 200_000
TINYFACE_PROBES = 2
TINYFACE_GALLERY = 2
VERIFICATION_BINS = ("hq", "lq")


# --------------------------------------------------------------------------- specs and policies
@dataclass(frozen=True)
class ImageSpec:
    """One image to generate: its random stream key, quality policy and framing."""

    split: str  # seed namespace, e.g. "train", "hq", "ijb", "tinyface_probe"
    identity: int  # global identity id
    image: int  # index within (split, identity)
    policy: str  # key of quality_policies()
    loose: bool = False  # loose crop (IJB) instead of an aligned face
    occlusion: bool = True
    media: Optional[int] = None  # frames of one medium share a base nuisance


def quality_policies(cfg: SyntheticConfig) -> dict[str, QualityPolicy]:
    """The degradation policies of the synthetic splits (see the package docstring)."""
    mix = cfg.degradation
    weights = {t: float(getattr(mix, t)) for t in DEGRADATION_TYPES}
    return {
        "train": policy_from_mix(mix, severity=(0.1, 1.0)),
        "hq": QualityPolicy(fraction=0.1, severity=(0.05, 0.3), max_per_image=1, weights=weights),
        "lq": QualityPolicy(fraction=0.85, severity=(0.3, 1.0), max_per_image=mix.max_per_image, weights=weights),
        "mixed": QualityPolicy(fraction=0.5, severity=(0.1, 1.0), max_per_image=mix.max_per_image, weights=weights),
        "tinyface_probe": QualityPolicy(
            fraction=1.0,
            severity=(0.1, 0.6),
            max_per_image=max(1, mix.max_per_image),
            weights=weights,
            required=("low_resolution",),
            required_severity=(0.55, 0.9),
        ),
    }


def identity_blocks(cfg: SyntheticConfig) -> dict[str, range]:
    """Disjoint global identity ranges of the splits."""
    sizes = [
        ("train", cfg.train_identities),
        ("verification", cfg.verification_identities),
        ("ijb", cfg.ijb_identities),
        ("tinyface", cfg.tinyface_identities),
        ("distractor", cfg.tinyface_distractors),
    ]
    out, start = {}, 0
    for name, n in sizes:
        out[name] = range(start, start + n)
        start += n
    return out


# --------------------------------------------------------------------------- split layouts
def train_specs(cfg: SyntheticConfig) -> list[ImageSpec]:
    ids = identity_blocks(cfg)["train"]
    return [ImageSpec("train", i, k, "train") for i in ids for k in range(cfg.train_images_per_identity)]


def verification_pairs(
    identities: Sequence[int], n_pairs: int, rng: np.random.Generator, *, hard_fraction: float = 0.5
) -> list[tuple[int, int, bool]]:
    """``(identity_a, identity_b, issame)`` for ``n_pairs`` pairs in 10 folds, each half genuine then half impostor.

    Genuine pairs cycle through a shuffled identity list (balanced use); impostor pairs take the
    next identity of another shuffled cycle and pair it with a family member (``hard_fraction``,
    when the family has another member in ``identities``) or a uniformly random other identity.
    """
    if n_pairs <= 0 or n_pairs % 20:
        raise ValueError(
            f"data.synthetic.verification_pairs must be a positive multiple of 20 "
            f"(10 folds, each half genuine and half impostor), got {n_pairs}"
        )
    ids = np.asarray(list(identities), dtype=np.int64)
    if len(ids) < 2:
        raise ValueError(f"data.synthetic.verification_identities must be >= 2 for impostor pairs, got {len(ids)}")
    families: dict[int, list[int]] = {}
    for i in ids.tolist():
        families.setdefault(i // FAMILY_SIZE, []).append(i)

    def cycle() -> Iterable[int]:
        while True:
            yield from rng.permutation(ids).tolist()

    gen_pos, gen_neg = cycle(), cycle()
    per_fold = n_pairs // 10
    pairs: list[tuple[int, int, bool]] = []
    for _ in range(10):
        for _ in range(per_fold // 2):
            a = next(gen_pos)
            pairs.append((a, a, True))
        for _ in range(per_fold // 2):
            a = next(gen_neg)
            mates = [m for m in families[a // FAMILY_SIZE] if m != a]
            if mates and rng.random() < hard_fraction:
                b = int(rng.choice(mates))
            else:
                b = int(rng.choice(ids[ids != a]))
            pairs.append((a, b, False))
    return pairs


def verification_specs(cfg: SyntheticConfig, seed: int, name: str) -> tuple[list[ImageSpec], np.ndarray, list[int]]:
    """Image specs (2 per pair, pair i = images 2i, 2i+1), issame flags and per-image identities of bin ``name``."""
    ids = identity_blocks(cfg)["verification"]
    pairs = verification_pairs(ids, cfg.verification_pairs, rng_for(seed, name, "pairs"))
    counter: dict[int, int] = {}
    specs, identities = [], []
    for a, b, _ in pairs:
        for ident in (a, b):
            k = counter.get(ident, 0)
            counter[ident] = k + 1
            specs.append(ImageSpec(name, ident, k, name, occlusion=(name != "hq")))
            identities.append(ident)
    return specs, np.array([same for _, _, same in pairs], dtype=bool), identities


@dataclass
class IJBLayout:
    specs: list[ImageSpec]
    faces: pd.DataFrame  # image, tid, mid, identity (score and landmarks added after rendering)
    pairs: pd.DataFrame  # tid1, tid2, label


def ijb_layout(cfg: SyntheticConfig, seed: int) -> IJBLayout:
    """Templates, media, images and template pairs of the synthetic IJB set."""
    rng = rng_for(seed, "ijb", "layout")
    rows, specs = [], []
    tid = mid = 0
    template_identity: list[int] = []
    for ident in identity_blocks(cfg)["ijb"]:
        k = 0
        for _ in range(cfg.ijb_templates_per_identity):
            tid += 1
            template_identity.append(ident)
            left = cfg.ijb_images_per_template
            while left > 0:
                mid += 1
                frames = min(left, int(rng.integers(1, 4)))
                for _ in range(frames):
                    specs.append(ImageSpec("ijb", ident, k, "mixed", loose=True, media=mid if frames > 1 else None))
                    rows.append({"image": f"{len(rows) + 1}.jpg", "tid": tid, "mid": mid, "identity": ident})
                    k += 1
                left -= frames
    tids = np.arange(1, tid + 1)
    owner = np.asarray(template_identity)
    t1, t2 = np.triu_indices(len(tids), k=1)
    label = (owner[t1] == owner[t2]).astype(np.int64)
    genuine = np.flatnonzero(label == 1)
    impostor = np.flatnonzero(label == 0)
    if len(impostor) > MAX_IJB_IMPOSTORS:
        impostor = np.sort(rng.choice(impostor, size=MAX_IJB_IMPOSTORS, replace=False))
    keep = np.sort(np.concatenate([genuine, impostor]))
    pairs = pd.DataFrame({"tid1": tids[t1[keep]], "tid2": tids[t2[keep]], "label": label[keep]})
    return IJBLayout(specs=specs, faces=pd.DataFrame(rows), pairs=pairs)


def tinyface_specs(cfg: SyntheticConfig) -> dict[str, list[tuple[str, ImageSpec, int]]]:
    """``{part: [(file name, spec, label)]}`` of the TinyFace-like identification set."""
    blocks = identity_blocks(cfg)
    probe, gallery, distract = [], [], []
    for local, ident in enumerate(blocks["tinyface"]):
        for k in range(TINYFACE_PROBES):
            probe.append((f"{local:04d}_{k}.jpg", ImageSpec("tinyface_probe", ident, k, "tinyface_probe"), local))
        for k in range(TINYFACE_GALLERY):
            gallery.append((f"{local:04d}_{k}.jpg", ImageSpec("tinyface_gallery", ident, k, "mixed"), local))
    for j, ident in enumerate(blocks["distractor"]):
        distract.append((f"distractor_{j:06d}.jpg", ImageSpec("tinyface_distractor", ident, 0, "mixed"), -1))
    return {"Probe": probe, "Gallery_Match": gallery, "Gallery_Distractor": distract}
