"""The params sections a run may override (``runs.<name>.head_params`` / ``train`` / ``model``): the heads'
hyperparameters (derived from :mod:`marginlab.head_specs`), the backbone and the training recipe."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional

from pydantic import Field, create_model, field_validator, model_validator

from marginlab.core.backbone_specs import BACKBONE_SPECS
from marginlab.core.config.sections import HEAD_NAMES, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Strict
from marginlab.head_specs import HEAD_SPECS, HeadSpec


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


HEAD_PARAM_MODELS: dict[str, type[HeadParams]] = {name: _head_params_model(HEAD_SPECS.get(name)) for name in HEAD_NAMES}
HeadDefaults = create_model(
    "HeadDefaults", __base__=Strict, **{name: (model, model()) for name, model in HEAD_PARAM_MODELS.items()}
)


# --------------------------------------------------------------------------- model
class ModelConfig(Strict):
    """Backbone. ``backbone`` is an IR-ResNet (ir_18 ... ir_200) or ``timm/<model_name>``."""

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

