"""The synthetic face set, written in the real formats (train RecordIO, verification .bin, IJB, TinyFace).

Modules: :mod:`.faces` (identities, nuisance, geometry) and :mod:`.render` (drawing) make a face,
:mod:`.degrade` degrades it (types, severities, ground-truth quality), :mod:`.layout` decides *which*
images exist, :mod:`.generator` renders them (in worker processes) and :mod:`.writer` writes them in
the real formats.  This package exports the generation API (:func:`write_synthetic`, the layouts,
:func:`generate_images`).  The set:

* **Identity blocks** (disjoint): train ``[0, N_train)``, then verification, IJB, TinyFace and
  TinyFace distractor identities, in that order.
* **train** (``train.rec/.idx``, ``train_meta.parquet``): ``train_images_per_identity`` images per
  identity, label = identity, degradations from ``data.synthetic.degradation`` (a share
  ``degraded_fraction`` is degraded by 1..``max_per_image`` types, severities U(0.1, 1)).
* **verification** (``verification/hq.bin``, ``lq.bin`` + ``*_meta.parquet``): the verification
  identities, fresh images per bin. ``verification_pairs`` pairs per bin arranged as 10 folds in
  order, each fold half genuine then half impostor (the LFW layout), so the count must be a
  multiple of 20. Impostors: half of them (where possible) pair an identity with a member of its
  own family (look-alikes), the rest with a random other identity. ``hq``: no occlusion, 10 % of
  images mildly degraded (one type, severity U(0.05, 0.3)); ``lq``: 85 % degraded (severity
  U(0.3, 1)).
* **IJB** (``ijb/ijb_syn/``): ``ijb_templates_per_identity`` templates per identity of
  ``ijb_images_per_template`` loose crops of mixed quality (50 % degraded, severity U(0.1, 1)).
  A template's images are grouped into media of 1-3 frames; frames of one medium share pose,
  light and background up to a small jitter (video frames). Loose crops place the face with a
  random scale, rotation and shift on a larger canvas; the true five landmarks go to the 5-points
  file and the detector score is ``clip(0.55 + 0.45 q + N(0, 0.03), 0.3, 1)`` for quality ``q``.
  Pairs: every pair of templates (genuine = same identity); at most :data:`MAX_IJB_IMPOSTORS`
  impostor pairs (a random subset beyond that).
* **TinyFace** (``tinyface/``): per identity :data:`TINYFACE_PROBES` probes (always
  low-resolution, severity U(0.55, 0.9), possibly one more type) and :data:`TINYFACE_GALLERY`
  gallery images (mixed quality), plus ``tinyface_distractors`` distractor images of distinct
  other identities (mixed quality). File names ``<identity:04d>_<k>.jpg``.

Metadata tables (one row per image) share the ground-truth columns ``gt_quality`` (=
``prod_t (1 - sev_t)``, :func:`.degrade.gt_quality`), ``degradations`` (``'+'``-joined
applied types, ``''`` if clean), ``sev_<type>`` for exposure, blur, low_resolution, noise, jpeg,
``yaw`` (radians), ``roll`` (degrees), ``occlusion`` (``''``, bar, hand, sunglasses, mask),
``identity`` (global id) and ``landmarks`` (10 floats x1, y1, ..., x5, y5 in the stored image), plus:
``train_meta.parquet``: ``index`` (reader position), ``label``, ``image``;
``verification/<bin>_meta.parquet``: ``index`` (image position), ``pair``, ``issame``;
``ijb/ijb_syn/meta.parquet``: ``index`` (face row), ``image``, ``tid``, ``mid``, ``width``, ``height``;
``tinyface/meta.parquet``: ``part``, ``index`` (position in the part's sorted file list), ``file``, ``label``.

Every image is a pure function of ``(seed, split, identity, image)``
(:func:`.faces.rng_for`), so the generation can run in any number of
worker processes and give identical bytes. The workers die with the process that started them
(a ``kill -9`` of prepare leaves none behind).
"""

from marginlab.data.synthetic.generator import SyntheticImage, generate_image, generate_images, resolve_workers
from marginlab.data.synthetic.layout import (
    IJB_NAME,
    MAX_IJB_IMPOSTORS,
    TINYFACE_GALLERY,
    TINYFACE_PROBES,
    VERIFICATION_BINS,
    IJBLayout,
    ImageSpec,
    identity_blocks,
    ijb_layout,
    quality_policies,
    tinyface_specs,
    train_specs,
    verification_pairs,
    verification_specs,
)
from marginlab.data.synthetic.writer import render_samples_png, write_synthetic

__all__ = [
    "IJB_NAME",
    "MAX_IJB_IMPOSTORS",
    "TINYFACE_GALLERY",
    "TINYFACE_PROBES",
    "VERIFICATION_BINS",
    "IJBLayout",
    "ImageSpec",
    "SyntheticImage",
    "generate_image",
    "generate_images",
    "identity_blocks",
    "ijb_layout",
    "quality_policies",
    "render_samples_png",
    "resolve_workers",
    "tinyface_specs",
    "train_specs",
    "verification_pairs",
    "verification_specs",
    "write_synthetic",
]
