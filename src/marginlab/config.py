"""Typed schema of ``params.yaml``.

Every stage calls :func:`load_params` first, so a bad configuration fails before any work, with a
message naming the key, the bad value and what is allowed. Defaults are the paper's values (AdaFace,
CVPR 2022, and each head's own paper), not the official CLI's argparse defaults (which set h = 0 and
m = 0.5 and so turn AdaFace into CosFace).

The module is one cohesive thing, the schema (one class per params section, the run-name rule and
the error formatting, the merged-run rules), which is why it runs to about 700 lines; YAML reading is in
:mod:`marginlab.safe_yaml` and the path policy in :mod:`marginlab.paths`.
"""

from __future__ import annotations

import copy
import reprlib
from pathlib import Path, PurePosixPath
import re
from typing import Annotated, Any, ClassVar, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from marginlab.backbone_specs import BACKBONE_SPECS
from marginlab.head_specs import HEAD_SPECS, HeadSpec, head_names
from marginlab.proxy_specs import PROXY_SPECS
from marginlab.safe_yaml import MAX_YAML_DEPTH, MAX_YAML_VALUES, YamlLimitError, load_bounded

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]


class ConfigError(ValueError):
    """A params file that does not match the schema; the message lists every problem."""


#: A run name becomes a DVC stage name (train@NAME), a params key, a directory under runs_dir and an
#: argument of the stage commands that DVC and Snakemake run through a shell: an allow-list, so that
#: no name can carry shell syntax (; | & $ ` quotes, spaces, newlines) or look like an option (-x).
RUN_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")


def check_run_name(name: Any) -> str:
    """``name`` if it is a valid run name (see :data:`RUN_NAME_PATTERN`), else ``ValueError`` saying why."""
    if not isinstance(name, str) or RUN_NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(
            f"run name {name!r} is not allowed: use 1-100 letters, digits, '_' and '-', not starting with '-' "
            "(it becomes a DVC stage name, a directory and a command-line argument)"
        )
    return name


class NestedConfigError(ValueError):
    """Problems inside a nested mapping (a run's overrides), each with its own key path."""

    def __init__(self, problems: list[tuple[tuple, str, Any]]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg, _ in problems))


def _nested_problems(section: str, model: type[BaseModel], values: dict[str, Any]) -> list[tuple[tuple, str, Any]]:
    """Validate ``values`` against ``model``; the problems with their paths below ``section``."""
    try:
        model(**values)
    except ValidationError as err:
        return [((section, *e["loc"]), _message(e), e.get("input")) for e in err.errors()]
    except ValueError as err:  # a head's own range or relation check
        return [((section,), str(err), values)]
    return []


def _message(e: dict) -> str:
    if e["type"] == "extra_forbidden":
        return "unknown key (not in the schema; check spelling)"
    return e["msg"].removeprefix("Value error, ")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --------------------------------------------------------------------------- heads
class HeadParams(Strict):
    """Base of the per-head hyperparameter models, which :func:`_head_params_model` derives from the
    heads' declarations (:mod:`marginlab.head_specs`: names, paper defaults, ranges)."""

    head_spec: ClassVar[HeadSpec]

    @model_validator(mode="after")
    def _relations(self) -> "HeadParams":
        self.head_spec.check(self.model_dump())  # cross-parameter rules (MagFace)
        return self


def _head_params_model(spec: HeadSpec) -> type[HeadParams]:
    fields = {key: (hp.field_type, Field(default=hp.default, **hp.field_bounds()))
              for key, hp in spec.hyperparameters.items()}
    model = create_model(f"{spec.name.capitalize()}Params", __base__=HeadParams, **fields)
    model.head_spec = spec
    return model


HEAD_NAMES = head_names()
HEAD_PARAM_MODELS: dict[str, type[HeadParams]] = {name: _head_params_model(HEAD_SPECS.get(name)) for name in HEAD_NAMES}
HeadDefaults = create_model(
    "HeadDefaults", __base__=Strict, **{name: (model, model()) for name, model in HEAD_PARAM_MODELS.items()}
)


# --------------------------------------------------------------------------- model
class ModelConfig(Strict):
    """Backbone. ``name`` is an IR-ResNet (ir_18 ... ir_200) or ``timm/<model_name>``."""

    # Schema defaults = the paper's Table 1 backbone (full-width IR-18 at 112x112); params.yaml
    # sets the small CPU default (quarter width at 64x64).
    backbone: str = "ir_18"
    width: Annotated[float, Field(gt=0.0, le=4.0)] = 1.0
    embedding_size: PositiveInt = 512
    input_size: Annotated[int, Field(ge=16, le=224)] = 112
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.4

    @model_validator(mode="after")
    def _width_only_for_ir(self) -> "ModelConfig":
        if self.backbone.startswith("timm/") and self.width != 1.0:
            raise ValueError(
                f"width={self.width} applies to IR-ResNets only; a timm backbone ({self.backbone}) needs width 1.0"
            )
        return self

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        spec = BACKBONE_SPECS.get(v)
        if spec.check_name is not None:  # a timm model timm lacks would fail training after prepare and quality
            spec.check_name(v)
        return v


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


# --------------------------------------------------------------------------- training
class DistributedConfig(Strict):
    """Data-parallel training of one run over several processes (``torch.distributed`` DDP).

    ``nproc_per_node`` > 1: ``python -m marginlab train RUN`` starts that many workers itself (elastic
    launch, one per GPU on CUDA); a process started by ``torchrun``/``srun`` with ``WORLD_SIZE`` and
    ``RANK`` set joins that group instead (several nodes). ``backend: auto`` is NCCL on CUDA, gloo on
    the CPU. ``sync_batchnorm`` normalises over the global batch; ``sync_head_stats`` all-reduces the
    heads' batch statistics (AdaFace μ/σ, CurricularFace t) so they equal a one-process run with the
    same global batch (off: the official code's behaviour, rank 0's buffers broadcast at each forward
    and updated from its local batch). ``timeout_s`` bounds every collective: a worker that died does
    not leave the others waiting forever.
    """

    nproc_per_node: Annotated[int, Field(ge=1, le=64)] = 1
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    sync_batchnorm: bool = False
    sync_head_stats: bool = False
    timeout_s: Annotated[int, Field(ge=5)] = 1800


class TrainConfig(Strict):
    epochs: PositiveInt = 6
    batch_size: PositiveInt = 128
    lr: PositiveFloat = 0.1
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    weight_decay: NonNegFloat = 5e-4
    milestones: list[float] = [12 / 26, 20 / 26, 24 / 26]
    lr_gamma: PositiveFloat = 0.1
    warmup_epochs: NonNegFloat = 0.0
    grad_clip: Optional[PositiveFloat] = None
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    num_workers: NonNegInt = 1
    threads: NonNegInt = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    probe_size: PositiveInt = 512
    # Fractions of the run's optimiser steps at which the probe is also measured, besides epoch ends
    # (probe/progress/, marginlab.train.probe_schedule): the paper's "early" is epoch 1 of 26 (~4 %).
    # In [0, 1], increasing, no repeats; [] = epoch ends only.
    probe_progress: list[float] = [0.0, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0]
    # Recompute the BatchNorm statistics for the current weights before each probe (marginlab.train.probe):
    # eval mode otherwise normalises with running statistics that lag the weights (66 % still the initial
    # ones after 4 steps), a network state training never uses. false = the running statistics as they are.
    probe_recalibrate_bn: bool = True
    selection: Literal["last", "val"] = "last"
    val_fraction: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.0
    # Train on the first N identities (labels 0..N-1) of the prepared training set, so one prepared set
    # serves several training-set sizes (README "Scale study"); the head has N classes. null: all.
    identities: Optional[PositiveInt] = None
    # torch.compile the backbone's training forward (marginlab.train.compiled, measured 1.3-1.6x per CPU
    # step): "auto" = on where the run repays the 1-2 min compile (CPU: IR-ResNet runs of >= 8e7
    # steps x batch x width x H x W, not the default run; CUDA: >= 2000 steps); "on"/"off" force it.
    compile: Literal["auto", "on", "off"] = "auto"
    # batch_size is the global batch: each of the N data-parallel processes takes batch_size / N.
    distributed: DistributedConfig = DistributedConfig()

    @model_validator(mode="after")
    def _batch_divides(self) -> "TrainConfig":
        n = self.distributed.nproc_per_node
        if self.batch_size % n:
            raise ValueError(
                f"train.batch_size {self.batch_size} is the global batch and must divide evenly over "
                f"train.distributed.nproc_per_node = {n} processes (e.g. {self.batch_size - self.batch_size % n or n})"
            )
        return self

    @model_validator(mode="after")
    def _selection_and_backend(self) -> "TrainConfig":
        if self.selection == "val" and self.val_fraction <= 0:
            raise ValueError(f"train.selection is 'val' but train.val_fraction is {self.val_fraction}; set a held-out "
                             "fraction of the training identities' images (e.g. 0.1) or use selection 'last'")
        if self.distributed.backend == "nccl" and self.device == "cpu":
            raise ValueError("train.distributed.backend is 'nccl' but train.device is 'cpu'; use 'gloo' or 'auto'")
        return self

    @field_validator("milestones")
    @classmethod
    def _sorted(cls, v: list[float]) -> list[float]:
        if any(x <= 0 for x in v) or list(v) != sorted(v):
            raise ValueError(f"milestones must be positive and increasing (fractions of training or epochs), got {v}")
        return v

    @field_validator("probe_progress")
    @classmethod
    def _progress_fractions(cls, v: list[float]) -> list[float]:
        if any(not 0.0 <= x <= 1.0 for x in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"probe_progress must be fractions of training in [0, 1], increasing without repeats "
                             f"(e.g. [0, 0.04, 1]; [] = epoch ends only), got {v}")
        return v


class RunSpec(Strict):
    """One entry of the experiment grid; head_params override ``heads.<head>`` defaults."""

    head: str
    head_params: dict[str, float | str] = {}
    proxy: str = "norm"
    seed: NonNegInt = 0
    # Runs sharing a label are seeds of one configuration (default: the name without a "-s<N>" suffix).
    label: Optional[str] = None
    # Which tables a run belongs to: "main" (head comparison), "ablation_h", "ablation_m", "ablation_proxy".
    tags: list[str] = []
    train: dict[str, Any] = {}
    model: dict[str, Any] = {}

    @field_validator("head")
    @classmethod
    def _known_head(cls, v: str) -> str:
        if v not in HEAD_NAMES:
            raise ValueError(f"unknown head {v!r}; allowed: {', '.join(HEAD_NAMES)}")
        return v

    @field_validator("proxy")
    @classmethod
    def _known_proxy(cls, v: str) -> str:
        PROXY_SPECS.get(v)
        return v

    @model_validator(mode="after")
    def _params_valid(self) -> "RunSpec":
        if self.proxy != "norm" and self.head != "adaface":
            raise ValueError(f"proxy {self.proxy!r} only applies to head 'adaface', not {self.head!r}")
        problems: list[tuple[tuple, str, Any]] = []
        base = HEAD_PARAM_MODELS[self.head]
        for key in sorted(set(self.head_params) - set(base.model_fields)):
            problems.append((("head_params", key), f"not a hyperparameter of head {self.head!r}; allowed: "
                             f"{', '.join(sorted(base.model_fields))}", self.head_params[key]))
        # The values themselves are checked merged with the shared sections (Params._merged_runs_valid): checked
        # alone against the schema defaults, a valid override (nproc_per_node 3 with a shared batch of 18) fails.
        if problems:
            raise NestedConfigError(problems)
        return self


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


class Params(Strict):
    seed: NonNegInt = 42
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    quality: QualityConfig = QualityConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    heads: HeadDefaults = HeadDefaults()
    runs: dict[str, RunSpec] = {"adaface": RunSpec(head="adaface")}
    evaluate: EvaluateConfig = EvaluateConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    gst: GstConfig = GstConfig()
    runs_dir: str = "runs"
    preset: str = "default"

    @field_validator("runs")
    @classmethod
    def _names(cls, v: dict[str, RunSpec]) -> dict[str, RunSpec]:
        if not v:
            raise ValueError("the experiment grid is empty: add at least one run (e.g. "
                             "'adaface-s0: {head: adaface, seed: 0, tags: [main]}'); with no run there is "
                             "nothing to train, evaluate or report")
        folded: dict[str, str] = {}
        for name in v:
            check_run_name(name)
            other = folded.setdefault(name.lower(), name)
            if other != name:
                raise ValueError(f"run names {other!r} and {name!r} differ only in case: they would share one folder "
                                 "under runs_dir on a case-insensitive file system (macOS, Windows); rename one")
        return v

    @model_validator(mode="after")
    def _merged_runs_valid(self) -> "Params":
        """Each run's merged configuration (shared sections + its overrides) passes the rules the stages apply:
        a RunSpec alone is checked against the schema defaults, so ``nproc_per_node: 4`` in a run with a
        shared batch of 18 would pass here and fail in train."""
        problems: list[tuple[tuple, str, Any]] = []
        seen: dict[tuple, list] = {}
        for name, spec in self.runs.items():
            merged = (("head_params", HEAD_PARAM_MODELS[spec.head], getattr(self.heads, spec.head).model_dump(),
                       spec.head_params, f"heads.{spec.head}"),
                      ("train", TrainConfig, self.train.model_dump(), spec.train, "train"),
                      ("model", ModelConfig, self.model.model_dump(), spec.model, "model"))
            for section, model, shared, own, shared_key in merged:
                key = (section, shared_key, repr(own))  # grids repeat the same overrides: validate each once
                if key not in seen:
                    seen[key] = _nested_problems(section, model, merge_values(shared, own))
                for loc, msg, value in seen[key]:
                    if len(loc) > 1 and not _overridden(own, loc[1:]):
                        msg += f" (the value comes from the shared section {shared_key})"
                    problems.append((("runs", name, *loc), msg, value))
        if problems:
            raise NestedConfigError(problems)
        return self

    @model_validator(mode="after")
    def _identities_exist(self) -> "Params":
        """Synthetic data has exactly ``data.synthetic.train_identities`` identities: check runs against it now."""
        if self.data.source != "synthetic":
            return self  # real data: checked against train.rec when the run starts
        available = self.data.synthetic.train_identities
        per_identity = self.data.synthetic.train_images_per_identity
        problems = []
        for name, spec in self.runs.items():
            train = _Merged(self.train, spec.train)  # validated just above (_merged_runs_valid)
            wanted = train.identities
            if wanted is not None and wanted > available:
                why = (f"{wanted} identities requested but the synthetic training set has {available} "
                       "(data.synthetic.train_identities)")
                problems.append((tuple(self.train_key(name, "identities").split(".")), why, wanted))
                continue
            images = (wanted or available) * per_identity
            if train.batch_size > images:  # the loader drops the last partial batch: no step at all
                why = (f"batch of {train.batch_size} is larger than the run's {images} synthetic training images "
                       f"({wanted or available} identities x data.synthetic.train_images_per_identity {per_identity}): "
                       "no full batch, nothing to train")
                problems.append((tuple(self.train_key(name, "batch_size").split(".")), why, train.batch_size))
        if problems:
            raise NestedConfigError(problems)
        return self

    # ----------------------------------------------------------------- resolved views
    def run(self, name: str) -> "ResolvedRun":
        if name not in self.runs:
            raise ConfigError(f"run {name!r} is not in params 'runs'; known runs: {', '.join(self.runs)}")
        spec = self.runs[name]
        head_defaults = getattr(self.heads, spec.head).model_dump()
        head_defaults.update(spec.head_params)
        train = TrainConfig(**deep_merge(self.train.model_dump(), spec.train))  # nested: train.distributed
        model = ModelConfig(**deep_merge(self.model.model_dump(), spec.model))
        return ResolvedRun(
            name=name, head=spec.head, head_params=head_defaults, proxy=spec.proxy, seed=spec.seed,
            label=spec.label or default_label(name), tags=list(spec.tags), train=train, model=model,
        )

    def train_key(self, name: str, key: str) -> str:
        """The params key that sets train ``key`` for run ``name``: ``runs.<name>.train.<key>`` when the run
        overrides it, else ``train.<key>`` (for error messages)."""
        return f"runs.{name}.train.{key}" if key in self.runs[name].train else f"train.{key}"


class _Merged:
    """Top-level train values of a run (its override, else the shared value) without building a model."""

    def __init__(self, shared: BaseModel, own: dict[str, Any]):
        self._shared, self._own = shared, own

    def __getattr__(self, key: str) -> Any:
        return self._own[key] if key in self._own else getattr(self._shared, key)


def _overridden(own: dict[str, Any], loc: tuple) -> bool:
    """True when the key path ``loc`` is set in a run's own overrides ``own``."""
    node: Any = own
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


class ResolvedRun(Strict):
    """A run with shared defaults merged in: everything training needs, nothing else."""

    name: str
    head: str
    head_params: dict[str, float | str]
    proxy: str
    seed: int
    label: str
    tags: list[str] = []
    train: TrainConfig
    model: ModelConfig


def default_label(run_name: str) -> str:
    """``adaface-s1`` → ``adaface``: the configuration a seed run belongs to."""
    return re.sub(r"-s\d+$", "", run_name)


#: Problems listed in one error message; a value with thousands of bad elements says how many more.
MAX_LISTED_PROBLEMS = 20


def _format_errors(err: ValidationError, source: str) -> str:
    entries: list[tuple[tuple, str, Any]] = []
    for e in err.errors():
        nested = (e.get("ctx") or {}).get("error")
        if isinstance(nested, NestedConfigError):
            entries += [((*e["loc"], *loc), msg, value) for loc, msg, value in nested.problems]
        else:
            entries.append((e["loc"], _message(e), e.get("input")))
    lines = [f"invalid configuration in {source}:"]
    for loc, msg, value in entries[:MAX_LISTED_PROBLEMS]:
        key = ".".join(str(p) for p in loc) or "<root>"
        lines.append(f"  - {key}: {msg} (got {short_repr(value)})")
    if len(entries) > MAX_LISTED_PROBLEMS:
        lines.append(f"  ... and {len(entries) - MAX_LISTED_PROBLEMS} more problems")
    return "\n".join(lines)


_REPR = reprlib.Repr()  # Python 3.11: limits are attributes, not constructor arguments
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def short_repr(value: Any, limit: int = 80) -> str:
    """A repr of at most ``limit`` characters that never builds the full repr of a large value
    (a params value can be a huge nested structure; ``repr`` of it would take minutes)."""
    shown = _REPR.repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def load_yaml_bounded(text: str, source: str, limit: int = MAX_YAML_VALUES, max_depth: int = MAX_YAML_DEPTH) -> Any:
    """``yaml.safe_load`` bounded by :mod:`marginlab.safe_yaml` (aliases, depth); a bound hit is a ConfigError."""
    try:
        return load_bounded(text, limit, max_depth)
    except YamlLimitError as err:
        raise ConfigError(f"{source}: {err}") from None


def validate_params(raw: dict[str, Any], source: str = "params", *, paths: Optional[tuple[Path, bool]] = None) -> Params:
    """Validate a params mapping; raise :class:`ConfigError` listing every problem.

    ``paths=(root, require_inputs)`` also applies the path policy (:mod:`marginlab.paths`). It runs here,
    before a stage gets its view (:mod:`marginlab.params_view`), because the policy guards every stage but is
    not an input of any stage's outputs: it must not make every stage depend on every path key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {source}: expected a mapping at top level, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None
    if paths is not None:
        from marginlab.paths import PathPolicyError, check_paths

        try:
            check_paths(params, paths[0], require_inputs=paths[1])
        except PathPolicyError as err:
            raise ConfigError(f"{source}: {err}") from None
    return params


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """:func:`deep_merge` without copying the leaves: for validation, which copies what it keeps."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge_values(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_params(path: str | Path = "params.yaml", overrides: Optional[dict[str, Any]] = None, *,
                root: str | Path | None = None, require_inputs: bool = False, check_path_policy: bool = True) -> Params:
    """Read and validate ``params.yaml`` (plus optional nested overrides), then the path policy
    (:mod:`marginlab.paths`) against the project ``root`` (default: the working directory, where the stages
    resolve relative paths); ``require_inputs``: the configured data paths must exist too."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file {path} not found")
    try:
        raw = load_yaml_bounded(path.read_text(), str(path)) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    except (UnicodeDecodeError, RecursionError) as err:
        raise ConfigError(f"{path} is not a readable YAML text file ({type(err).__name__})") from None
    if overrides:
        raw = deep_merge(raw, overrides)
    policy = (Path.cwd() if root is None else Path(root), require_inputs) if check_path_policy else None
    return validate_params(raw, source=str(path), paths=policy)


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m marginlab.config [PARAMS]``: validate a params file; exit 2 with every problem listed."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else "params.yaml"
    try:
        params = load_params(path, require_inputs=True)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{path}: valid (preset {params.preset!r}, {len(params.runs)} runs, data.source {params.data.source!r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
