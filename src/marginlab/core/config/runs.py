"""The experiment grid's entries (:class:`RunSpec`), the run-name rule, and how a run's overrides merge with
the shared sections into the :class:`ResolvedRun` training gets."""

from __future__ import annotations

import copy
import re
from typing import Any, Optional

from pydantic import BaseModel, field_validator, model_validator

from marginlab.core.config.problems import NestedConfigError
from marginlab.core.config.sections import HEAD_NAMES, NonNegInt, Strict
from marginlab.core.config.training import HEAD_PARAM_MODELS, ModelConfig, TrainConfig
from marginlab.core.proxy_specs import PROXY_SPECS

#: A run name becomes a DVC stage name (train@NAME), a params key, a directory under runs_dir and an
#: argument of the stage commands that DVC and Snakemake run through a shell: an allow-list, so that
#: no name can carry shell syntax (; | & $ ` quotes, spaces, newlines) or look like an option (-x).
RUN_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")


def check_run_name(name: Any, what: str = "run name") -> str:
    """``name`` if it is a valid run name (see :data:`RUN_NAME_PATTERN`), else ``ValueError`` saying why."""
    if not isinstance(name, str) or RUN_NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(
            f"{what} {name!r} is not allowed: use 1-100 letters, digits, '_' and '-', not starting with '-' "
            "(it becomes a DVC stage name, a directory and a command-line argument)"
        )
    return name


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


class MergedTrain:
    """Top-level train values of a run (its override, else the shared value) without building a model."""

    def __init__(self, shared: BaseModel, own: dict[str, Any]):
        self._shared, self._own = shared, own

    def __getattr__(self, key: str) -> Any:
        return self._own[key] if key in self._own else getattr(self._shared, key)


def is_overridden(own: dict[str, Any], loc: tuple) -> bool:
    """Whether a run sets the key path ``loc`` itself, so that an error can name the shared section otherwise."""
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


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``, nested mappings key by key (``train.distributed``)."""
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

