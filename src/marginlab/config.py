"""Typed schema of ``params.yaml``.

Every stage calls :func:`load_params` first, so a bad configuration fails before any work, with a
message naming the key, the bad value and what is allowed. Defaults are the paper's values (see
``../shared/reference/heads.md``), not the official CLI's argparse defaults (which set h = 0 and
m = 0.5 and so turn AdaFace into CosFace).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

HEAD_NAMES = ("normface", "cosface", "arcface", "curricularface", "magface", "adaface")
IR_BACKBONES = ("ir_18", "ir_34", "ir_50", "ir_100", "ir_200")
PROXIES = ("norm", "brisque", "p_yi")

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]


class ConfigError(ValueError):
    """A params file that does not match the schema; the message lists every problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --------------------------------------------------------------------------- heads
class NormFaceParams(Strict):
    s: PositiveFloat = 64.0


class CosFaceParams(Strict):
    s: PositiveFloat = 64.0
    m: NonNegFloat = 0.4


class ArcFaceParams(Strict):
    s: PositiveFloat = 64.0
    m: NonNegFloat = 0.5


class CurricularFaceParams(Strict):
    s: PositiveFloat = 64.0
    m: NonNegFloat = 0.5


class MagFaceParams(Strict):
    s: PositiveFloat = 64.0
    l_a: PositiveFloat = 10.0
    u_a: PositiveFloat = 110.0
    l_m: NonNegFloat = 0.45
    u_m: NonNegFloat = 0.8
    lambda_g: NonNegFloat = 35.0

    @model_validator(mode="after")
    def _ordered(self) -> "MagFaceParams":
        if not self.u_a > self.l_a:
            raise ValueError(f"magface needs u_a > l_a, got l_a={self.l_a}, u_a={self.u_a}")
        if not self.u_m >= self.l_m:
            raise ValueError(f"magface needs u_m >= l_m, got l_m={self.l_m}, u_m={self.u_m}")
        return self


class AdaFaceParams(Strict):
    s: PositiveFloat = 64.0
    m: NonNegFloat = 0.4
    h: PositiveFloat = 0.333
    t_alpha: Annotated[float, Field(gt=0.0, le=1.0)] = 0.01


HEAD_PARAM_MODELS: dict[str, type[Strict]] = {
    "normface": NormFaceParams,
    "cosface": CosFaceParams,
    "arcface": ArcFaceParams,
    "curricularface": CurricularFaceParams,
    "magface": MagFaceParams,
    "adaface": AdaFaceParams,
}


class HeadDefaults(Strict):
    normface: NormFaceParams = NormFaceParams()
    cosface: CosFaceParams = CosFaceParams()
    arcface: ArcFaceParams = ArcFaceParams()
    curricularface: CurricularFaceParams = CurricularFaceParams()
    magface: MagFaceParams = MagFaceParams()
    adaface: AdaFaceParams = AdaFaceParams()


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
        if v in IR_BACKBONES or (v.startswith("timm/") and len(v) > 5):
            return v
        raise ValueError(f"unknown backbone {v!r}; allowed: {', '.join(IR_BACKBONES)} or 'timm/<model_name>'")


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


class DataConfig(Strict):
    source: Literal["synthetic", "recordio", "folders"] = "synthetic"
    name: str = "synthetic"
    # data/ is reserved for the user's raw datasets (versioned with data.dvc); pipeline products live beside it.
    prepared_dir: str = "prepared"
    train_rec: Optional[str] = None
    train_folders: Optional[str] = None
    val_bins: list[str] = []
    ijb: list[IJBSource] = []
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
    synthetic: SyntheticConfig = SyntheticConfig()

    @model_validator(mode="after")
    def _source_has_input(self) -> "DataConfig":
        if self.source == "recordio" and not self.train_rec:
            raise ValueError("data.source is 'recordio' but data.train_rec (path to train.rec) is not set")
        if self.source == "folders" and not self.train_folders:
            raise ValueError("data.source is 'folders' but data.train_folders (identity-folder root) is not set")
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
    selection: Literal["last", "val"] = "last"
    val_fraction: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.0

    @field_validator("milestones")
    @classmethod
    def _sorted(cls, v: list[float]) -> list[float]:
        if any(x <= 0 for x in v) or list(v) != sorted(v):
            raise ValueError(f"milestones must be positive and increasing (fractions of training or epochs), got {v}")
        return v


class RunSpec(Strict):
    """One entry of the experiment grid; head_params override ``heads.<head>`` defaults."""

    head: str
    head_params: dict[str, float] = {}
    proxy: Literal["norm", "brisque", "p_yi"] = "norm"
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

    @model_validator(mode="after")
    def _params_valid(self) -> "RunSpec":
        base = HEAD_PARAM_MODELS[self.head]
        unknown = set(self.head_params) - set(base.model_fields)
        if unknown:
            raise ValueError(
                f"head_params {sorted(unknown)} not known for head {self.head!r}; allowed: {sorted(base.model_fields)}"
            )
        base(**self.head_params)  # range checks
        if self.proxy != "norm" and self.head != "adaface":
            raise ValueError(f"proxy {self.proxy!r} only applies to head 'adaface', not {self.head!r}")
        TrainConfig(**self.train)
        ModelConfig(**self.model)
        return self


class EvaluateConfig(Strict):
    batch_size: PositiveInt = 256
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
    runs_dir: str = "runs"
    preset: str = "default"

    @field_validator("runs")
    @classmethod
    def _names(cls, v: dict[str, RunSpec]) -> dict[str, RunSpec]:
        for name in v:
            if not name or any(c in name for c in "/\\ @:.{}$"):
                raise ValueError(
                    f"run name {name!r} must be non-empty and free of / \\ space @ : . {{ }} $ "
                    "(it becomes a DVC stage name and a params key)"
                )
        return v

    # ----------------------------------------------------------------- resolved views
    def run(self, name: str) -> "ResolvedRun":
        if name not in self.runs:
            raise ConfigError(f"run {name!r} is not in params 'runs'; known runs: {', '.join(self.runs)}")
        spec = self.runs[name]
        head_defaults = getattr(self.heads, spec.head).model_dump()
        head_defaults.update(spec.head_params)
        train = TrainConfig(**{**self.train.model_dump(), **spec.train})
        model = ModelConfig(**{**self.model.model_dump(), **spec.model})
        return ResolvedRun(
            name=name, head=spec.head, head_params=head_defaults, proxy=spec.proxy, seed=spec.seed,
            label=spec.label or default_label(name), tags=list(spec.tags), train=train, model=model,
        )


class ResolvedRun(Strict):
    """A run with shared defaults merged in: everything training needs, nothing else."""

    name: str
    head: str
    head_params: dict[str, float]
    proxy: str
    seed: int
    label: str
    tags: list[str] = []
    train: TrainConfig
    model: ModelConfig


def default_label(run_name: str) -> str:
    """``adaface-s1`` → ``adaface``: the configuration a seed run belongs to."""
    import re

    return re.sub(r"-s\d+$", "", run_name)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        value = e.get("input")
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not in the schema; check spelling)"
        lines.append(f"  - {key}: {msg} (got {shown})")
    return "\n".join(lines)


def validate_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a params mapping; raise :class:`ConfigError` listing every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {source}: expected a mapping at top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_params(path: str | Path = "params.yaml", overrides: Optional[dict[str, Any]] = None) -> Params:
    """Read and validate ``params.yaml`` (plus optional nested overrides)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if overrides:
        raw = deep_merge(raw, overrides)
    return validate_params(raw, source=str(path))
