"""Typed schema of ``params.yaml``.

Every stage calls :func:`load_params` first, so a bad configuration fails before any work, with a
message naming the key, the bad value and what is allowed. Defaults are the paper's values (AdaFace,
CVPR 2022, and each head's own paper), not the official CLI's argparse defaults (which set h = 0 and
m = 0.5 and so turn AdaFace into CosFace).

One job per module: :mod:`.sections` (the study-wide sections), :mod:`.training` (the sections a run may
override: heads, model, train), :mod:`.runs` (the run grid and how a run's overrides merge),
:mod:`.params` (the root and its cross-section rules), :mod:`.problems` (error messages), :mod:`.loading`
(reading a file) and ``python -m marginlab.core.config`` (:mod:`.__main__`). This package re-exports the public
names, so ``from marginlab.core.config import ...`` is the API. YAML bounds are in :mod:`marginlab.core.safe_yaml`,
the path policy in :mod:`marginlab.core.paths`.
"""

from __future__ import annotations

from marginlab.core.config.loading import load_params, load_yaml_bounded, validate_params
from marginlab.core.config.params import Params
from marginlab.core.config.released import RELEASED_FORMATS, ReleasedModel
from marginlab.core.config.problems import MAX_LISTED_PROBLEMS, ConfigError, NestedConfigError, short_repr
from marginlab.core.config.runs import (
    RUN_NAME_PATTERN,
    ResolvedRun,
    RunSpec,
    check_run_name,
    deep_merge,
    default_label,
    merge_values,
)
from marginlab.core.config.sections import (
    HEAD_NAMES,
    AlignmentConfig,
    AnalysisConfig,
    AugmentConfig,
    DataConfig,
    DegradationMix,
    EvaluateConfig,
    GstConfig,
    IJBSource,
    NonNegFloat,
    NonNegInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    QualityConfig,
    Strict,
    SyntheticConfig,
)
from marginlab.core.config.training import (
    HEAD_PARAM_MODELS,
    DistributedConfig,
    HeadDefaults,
    HeadParams,
    ModelConfig,
    TrainConfig,
)
from marginlab.core.safe_yaml import MAX_YAML_DEPTH, MAX_YAML_VALUES

__all__ = [
    "RELEASED_FORMATS",
    "ReleasedModel",
    "HEAD_NAMES",
    "HEAD_PARAM_MODELS",
    "MAX_LISTED_PROBLEMS",
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "RUN_NAME_PATTERN",
    "AlignmentConfig",
    "AnalysisConfig",
    "AugmentConfig",
    "ConfigError",
    "DataConfig",
    "DegradationMix",
    "DistributedConfig",
    "EvaluateConfig",
    "GstConfig",
    "HeadDefaults",
    "HeadParams",
    "IJBSource",
    "ModelConfig",
    "NestedConfigError",
    "NonNegFloat",
    "NonNegInt",
    "Params",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "QualityConfig",
    "ResolvedRun",
    "RunSpec",
    "Strict",
    "SyntheticConfig",
    "TrainConfig",
    "check_run_name",
    "deep_merge",
    "default_label",
    "load_params",
    "load_yaml_bounded",
    "merge_values",
    "short_repr",
    "validate_params",
]
