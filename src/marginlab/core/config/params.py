"""The root of the params schema: every section, and the rules that span sections (each run's merged
configuration, synthetic identities); :meth:`Params.run` resolves a run."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator, model_validator

from marginlab.core.config.problems import ConfigError, NestedConfigError, nested_problems
from marginlab.core.config.released import ReleasedModel
from marginlab.core.config.runs import (
    MergedTrain,
    ResolvedRun,
    RunSpec,
    check_run_name,
    deep_merge,
    default_label,
    is_overridden,
    merge_values,
)
from marginlab.core.config.sections import (
    AnalysisConfig,
    AugmentConfig,
    DataConfig,
    EvaluateConfig,
    GstConfig,
    NonNegInt,
    QualityConfig,
    Strict,
)
from marginlab.core.config.training import HEAD_PARAM_MODELS, HeadDefaults, ModelConfig, TrainConfig


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
    released: dict[str, ReleasedModel] = {}

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

    @field_validator("released")
    @classmethod
    def _released_names(cls, v: dict[str, ReleasedModel]) -> dict[str, ReleasedModel]:
        for name in v:
            check_run_name(name, "released model name")  # the folder released/<name>, a DVC stage name
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
                    seen[key] = nested_problems(section, model, merge_values(shared, own))
                for loc, msg, value in seen[key]:
                    if len(loc) > 1 and not is_overridden(own, loc[1:]):
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
            train = MergedTrain(self.train, spec.train)  # validated just above (_merged_runs_valid)
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
        """Run ``name`` with the shared sections merged into its overrides. A method reading through ``self``:
        a stage calls it on its params view (:mod:`marginlab.core.params_view`), which checks every key it reads."""
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

