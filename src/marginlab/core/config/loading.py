"""Reading ``params.yaml``: bounded YAML, schema validation, then the path policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from marginlab.core.config.params import Params
from marginlab.core.config.problems import ConfigError, format_errors
from marginlab.core.config.runs import deep_merge
from marginlab.core.safe_yaml import MAX_YAML_DEPTH, MAX_YAML_VALUES, YamlLimitError, load_bounded


def load_yaml_bounded(text: str, source: str, limit: int = MAX_YAML_VALUES, max_depth: int = MAX_YAML_DEPTH) -> Any:
    """``yaml.safe_load`` bounded by :mod:`marginlab.core.safe_yaml` (aliases, depth); a bound hit is a ConfigError."""
    try:
        return load_bounded(text, limit, max_depth)
    except YamlLimitError as err:
        raise ConfigError(f"{source}: {err}") from None


def validate_params(raw: dict[str, Any], source: str = "params", *, paths: Optional[tuple[Path, bool]] = None) -> Params:
    """Validate a params mapping; raise :class:`ConfigError` listing every problem.

    ``paths=(root, require_inputs)`` also applies the path policy (:mod:`marginlab.core.paths`). It runs here,
    before a stage gets its view (:mod:`marginlab.core.params_view`), because the policy guards every stage but is
    not an input of any stage's outputs: it must not make every stage depend on every path key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {source}: expected a mapping at top level, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err, source)) from None
    if paths is not None:
        from marginlab.core.paths import PathPolicyError, check_paths

        try:
            check_paths(params, paths[0], require_inputs=paths[1])
        except PathPolicyError as err:
            raise ConfigError(f"{source}: {err}") from None
    return params


def load_params(path: str | Path = "params.yaml", overrides: Optional[dict[str, Any]] = None, *,
                root: str | Path | None = None, require_inputs: bool = False, check_path_policy: bool = True) -> Params:
    """Read and validate ``params.yaml`` (plus optional nested overrides), then the path policy
    (:mod:`marginlab.core.paths`) against the project ``root`` (default: the working directory, where the stages
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

