"""The params sections that hold one value for the whole study (data, augmentation, quality, evaluation,
analysis, gst), the strict base every section derives from and the shared field types."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from marginlab.head_specs import head_names

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt key must not fall back silently to the default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


HEAD_NAMES = head_names()


# --------------------------------------------------------------------------- data
class DegradationMix(Strict):
    """Synthetic degradations: share of degraded images and the relative weight of each type."""

    degraded_fraction: Probability = 0.35
    max_per_image: Annotated[int, Field(ge=1, le=5)] = 2
    blur: NonNegFloat = 1.0
    low_resolution: NonNegFloat = 1.0
    noise: NonNegFloat = 1.0
    jpeg: NonNegFloat = 1.0
    exposure: NonNegFloat = 1.0


class SyntheticConfig(Strict):
    image_size: Annotated[int, Field(ge=32, le=256)] = 112
    train_identities: PositiveInt = 100
    train_images_per_identity: PositiveInt = 24
    verification_identities: PositiveInt = 60
    verification_pairs: PositiveInt = 600
    ijb_identities: PositiveInt = 40
    ijb_templates_per_identity: PositiveInt = 2
    ijb_images_per_template: PositiveInt = 4
    tinyface_identities: PositiveInt = 40
    tinyface_distractors: NonNegInt = 200
    jpeg_quality: Annotated[int, Field(ge=10, le=100)] = 95
    degradation: DegradationMix = DegradationMix()


class IJBSource(Strict):
    """An IJB-B/C style set: meta files plus loose crops (aligned with the 5 landmarks)."""

    name: str = "ijbc"
    meta_dir: str
    image_dir: str


class AlignmentConfig(Strict):
    """``data.alignment``: face detection and alignment of raw photos (used when ``data.align: detect``).

    MTCNN (facenet-pytorch, weights shipped in the wheel) finds faces and five landmarks; each kept face
    is warped to the ArcFace template at ``data.image_size`` (:mod:`marginlab.data.align`)."""

    no_face: Literal["skip", "center_crop"] = "skip"  # no face (or none above min_score): drop, or keep a centre crop
    multiple_faces: Literal["largest", "central"] = "largest"  # several faces: the biggest box, or the nearest the centre
    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9  # detector (ONet) probability below which a face is ignored
    min_face_size: Annotated[int, Field(ge=12)] = 20  # smallest face side searched, in detection-input pixels
    # ... raised towards this fraction of the photo's shorter side, in whole pyramid steps (issue #24):
    # MTCNN then skips its finest, costliest pyramid levels (a 1024x768 photo is searched at 8 scales
    # instead of 11; the others are the same). A face smaller than that (a background face, the faces
    # of a group photo) is no longer found, so which face is kept can change on such photos; 0 =
    # min_face_size alone (before issue #24).
    min_face_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    thresholds: tuple[Probability, Probability, Probability] = (0.6, 0.7, 0.7)  # MTCNN P/R/O-net stage thresholds
    # Images whose longer side exceeds max_side are downscaled (area) for detection only; landmarks are
    # mapped back and the warp reads the full-resolution image.
    max_side: Annotated[int, Field(ge=64)] = 1024
    batch_size: PositiveInt = 16  # images of one size detected together
    chunk_size: PositiveInt = 256  # detections are stored every chunk_size images (a killed run resumes)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: NonNegInt = 0  # torch threads on the CPU; 0 = PyTorch default
    # Detection results keyed by the sha256 of each image file and by the detector settings above that
    # change detections (not the policy keys): a rerun of prepare (another image_size, more val_bins)
    # detects only images it has not seen. Beside prepared_dir, not inside it (DVC deletes that first).
    cache_dir: str = "align_cache"


class DataConfig(Strict):
    source: Literal["synthetic", "recordio", "folders"] = "synthetic"
    name: str = "synthetic"
    # data/ is reserved for the user's raw datasets (versioned with data.dvc); pipeline products live beside it.
    prepared_dir: str = "prepared"
    train_rec: Optional[str] = None
    train_folders: Optional[str] = None
    val_bins: list[str] = []
    ijb: list[IJBSource] = []
    # A TinyFace-style identification set (TinyFace's Testing_Set: Probe/, Gallery_Match/ and optionally
    # Gallery_Distractor/, files named <identity>_<k>.<ext>), evaluated as closed-set rank-k. Ingested
    # like .bin images (conformed to image_size, or detected and aligned with align: detect). Synthetic
    # data generates its own.
    tinyface: Optional[Annotated[str, Field(min_length=1)]] = None
    channel_order: Literal["BGR", "RGB"] = "BGR"
    skip_corrupt: bool = False
    # Every ingested real image (training records, identity-folder images, .bin images) is brought to
    # image_size x image_size once, at prepare: a non-square image is first made square by a centre
    # crop (``resize: center_crop``, keeps the face centre) or by padding with black (``pad``, keeps
    # everything), then resized (area interpolation when shrinking, bilinear when enlarging). Images
    # already at that size are kept byte for byte; the manifest counts the ones changed. The synthetic
    # generator draws at data.synthetic.image_size.
    image_size: Annotated[int, Field(ge=16, le=1024)] = 112
    resize: Literal["center_crop", "pad"] = "center_crop"
    # Largest image (width x height, read from the file's header before decoding) that is decoded; a larger
    # one is refused (or skipped and counted with skip_corrupt). 200 MP fits every camera photo; a 0.9 MB PNG
    # that declares 30000 x 30000 pixels would otherwise take gigabytes of memory.
    max_image_pixels: Annotated[int, Field(ge=1024)] = 200_000_000
    # The paper's Table 1 subset (README "The Table 1 subset"): a file of indices (comma- or
    # whitespace-separated) into the torchvision ImageFolder order of the training set, as the official
    # assets/ms1mv2_train_subset_index.txt; prepare keeps those images, drops identities with fewer than
    # 5 of them and numbers the rest 0..K-1. null: the whole training set.
    subset_index: Optional[Annotated[str, Field(min_length=1)]] = None
    # none: images are used as they are (already aligned crops). detect: prepare finds the face and its
    # five landmarks in every data.train_folders, data.val_bins and data.tinyface image, warps it to the
    # ArcFace 112x112 template (scaled to image_size) and records the outcome per image in
    # prepared/alignment.parquet (README "Your own photos"). IJB sets keep their own landmarks.
    align: Literal["none", "detect"] = "none"
    alignment: AlignmentConfig = AlignmentConfig()
    synthetic: SyntheticConfig = SyntheticConfig()

    @model_validator(mode="after")
    def _source_has_input(self) -> "DataConfig":
        if self.source == "recordio" and not self.train_rec:
            raise ValueError("data.source is 'recordio' but data.train_rec (path to train.rec) is not set")
        if self.source == "folders" and not self.train_folders:
            raise ValueError("data.source is 'folders' but data.train_folders (identity-folder root) is not set")
        if self.align == "detect" and self.source != "folders":
            raise ValueError(
                f"data.align 'detect' finds faces in raw photos of data.train_folders (and data.val_bins): it needs "
                f"data.source 'folders', not {self.source!r} (synthetic images and InsightFace RecordIO are aligned "
                f"crops already; set data.align: none)"
            )
        cache, prepared = PurePosixPath(self.alignment.cache_dir), PurePosixPath(self.prepared_dir)
        if cache == prepared or prepared in cache.parents:
            raise ValueError(
                f"data.alignment.cache_dir {self.alignment.cache_dir!r} must lie outside data.prepared_dir "
                f"{self.prepared_dir!r} (DVC deletes the prepared directory before prepare runs; the cache must survive it)"
            )
        if self.tinyface is not None and self.source == "synthetic":
            raise ValueError("data.tinyface names a real identification set, but data.source 'synthetic' generates its "
                             "own TinyFace-style set (data.synthetic.tinyface_*); set data.tinyface: null or use real data")
        if self.align == "detect" and self.subset_index is not None:
            raise ValueError("data.align 'detect' and data.subset_index cannot be combined (the subset indexes an "
                             "already aligned training set); set one of them to its default")
        if self.subset_index is not None and self.source not in ("recordio", "folders"):
            raise ValueError(
                f"data.subset_index selects images of a real training set: it needs data.source 'recordio' "
                f"or 'folders', not {self.source!r} (set it to null for synthetic data)"
            )
        return self


class AugmentConfig(Strict):
    """AdaFace augmentations, each applied independently with its probability, then flip."""

    crop_p: Probability = 0.2
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    lowres_p: Probability = 0.2
    lowres_ratio: tuple[float, float] = (0.2, 1.0)
    photometric_p: Probability = 0.2
    brightness: NonNegFloat = 0.5
    contrast: NonNegFloat = 0.5
    saturation: NonNegFloat = 0.5
    flip_p: Probability = 0.5


# --------------------------------------------------------------------------- quality
class QualityConfig(Strict):
    model_path: str = "models/brisque_live.pth"
    output_dir: str = "quality"
    batch_size: PositiveInt = 32  # CPU optimum measured in bench/bench_quality.py; GPUs like larger
    chunk_size: PositiveInt = 2048
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: NonNegInt = 0  # torch threads; 0 = PyTorch default
    # An image whose longer side exceeds max_side is downscaled (area interpolation, aspect kept) to
    # that side before BRISQUE sees it; null scores every image at its stored size.
    max_side: Optional[Annotated[int, Field(ge=32)]] = 512
    # sha256 of the model file quality.model_path must have. null = the converted LIVE model that the
    # brisque_model stage writes (its identity is pinned in marginlab.quality.brisque_model); set it to
    # the digest of another model to score with that model on purpose.
    model_sha256: Optional[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = None


class EvaluateConfig(Strict):
    batch_size: PositiveInt = 128  # the fastest on the 2-core CPU (bench/RESULTS.md); GPU presets use 256+
    channels_last: bool = True  # channels_last input batches on CPU and CUDA (marginlab.evaluate.embed)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: Optional[NonNegInt] = None  # image-decoding workers; None = 0 on CPU, up to 8 on CUDA
    flip: bool = True
    fusion: Literal["norm", "mean", "detector"] = "norm"
    fars: list[float] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    ranks: list[PositiveInt] = [1, 5]


class AnalysisConfig(Strict):
    n_resamples: Annotated[int, Field(ge=1000)] = 2000  # bootstrap resamples per 95% interval
    norm_bins: Annotated[int, Field(ge=2, le=20)] = 5  # feature-norm quantile bins (augmentation analysis)
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    workers: NonNegInt = 0  # bootstrap threads (0 = one per core); results do not depend on it
    # Claim 5's comparator, fixed before looking: a baseline head (AdaFace vs that head alone; default
    # CurricularFace, the paper's Tables 4-5 comparator) or "dunnett" (every baseline, Dunnett-adjusted).
    comparator: str = "curricularface"
    # Claim 5b's non-inferiority margin in points of accuracy / TAR / rank-1 (AdaFace may trail by less).
    noninferiority_margin: Annotated[float, Field(gt=0.0, le=20.0)] = 1.0

    @field_validator("comparator")
    @classmethod
    def _comparator(cls, v: str) -> str:
        allowed = [h for h in HEAD_NAMES if h != "adaface"] + ["dunnett"]
        if v not in allowed:
            raise ValueError(f"analysis.comparator must be a baseline head or 'dunnett' (one of {', '.join(allowed)}), "
                             f"got {v!r}")
        return v


class GstConfig(Strict):
    """The ``gst`` stage (Fig. 3): grid sizes of the |GST| maps and curves on the two-class toy."""

    n: Annotated[int, Field(ge=3, le=2001)] = 201  # map grid points per axis over [-0.995, 0.995]
    curve_n: Annotated[int, Field(ge=3, le=20001)] = 801  # points per GST-vs-cos θ_y curve
    cos_nontarget: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.5  # non-target cosine of the curves (issue #24)
