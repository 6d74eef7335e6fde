"""Read DVC's resolved stage list (grids already expanded) into a runner-neutral graph.

dvc.yaml is the single definition of the study. ``load_stages`` asks DVC for its resolved stages
(``Repo.index.stages``: commands, file dependencies, outputs, params keys) and turns each into a
:class:`PipelineStage`. A dependency on a directory that *contains* other stages' outputs (e.g. the
analysis stage depending on ``runs``) is expanded into those outputs, because Snakemake links jobs by
exact output paths. ``stage_edges`` gives the producer → consumer edges both tools must agree on.

DVC's ``index`` API is internal: dvc is pinned exactly in pyproject.toml and tests/test_pipeline_graph.py
compares this graph with ``dvc dag`` and ``snakemake --rulegraph``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any


@dataclass(frozen=True)
class PipelineStage:
    name: str  # DVC address, e.g. "train@adaface"
    cmd: str
    inputs: tuple[str, ...]  # concrete files/dirs: sources or other stages' outputs
    outputs: tuple[str, ...]
    directory_outputs: tuple[str, ...]  # declared in meta.snakemake.directories, existing dirs, or no suffix
    persistent_outputs: tuple[str, ...]  # DVC `persist: true` (resume state): Snakemake must not delete them
    params: dict[str, Any] = field(default_factory=dict)  # resolved values of the params it tracks
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def snakemake(self) -> dict[str, Any]:
        return dict((self.meta or {}).get("snakemake", {}) or {})


def rule_name(stage_name: str) -> str:
    """Snakemake rule names are identifiers: ``train@ada-h0.22`` → ``train__ada_h0_22``."""
    out = stage_name.replace("@", "__")
    return "".join(c if c.isalnum() or c == "_" else "_" for c in out)


def _is_under(child: str, parent: str) -> bool:
    c, p = PurePosixPath(child), PurePosixPath(parent)
    return c != p and p in c.parents


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def load_stages(repo_root: str | Path = ".") -> list[PipelineStage]:
    """Resolved stages of ``repo_root/dvc.yaml`` in DVC's order (topologically valid)."""
    from dvc.repo import Repo  # heavy import; keep it local
    import yaml

    from marginlab.config import load_params

    root = Path(repo_root).resolve()
    params_file = root / "params.yaml"
    if params_file.exists():
        # Validate before any rule exists: run names become shell arguments of the generated commands.
        load_params(params_file)
    all_params = yaml.safe_load(params_file.read_text()) if params_file.exists() else {}
    cwd = os.getcwd()
    try:
        os.chdir(root)
        with Repo(str(root)) as repo:
            raw, persistent = [], set()
            for st in repo.index.stages:
                if not getattr(st, "cmd", None):
                    continue  # .dvc files (data.dvc) are data, not jobs
                file_deps, param_keys = [], {}
                for dep in st.deps:
                    keys = getattr(dep, "params", None)
                    if keys is not None:
                        for k in keys:
                            param_keys[k] = _lookup(all_params, k)
                    else:
                        file_deps.append(dep.def_path)
                outs = [o.def_path for o in st.outs]
                persistent.update(o.def_path for o in st.outs if o.persist)
                raw.append((st.addressing, st.cmd if isinstance(st.cmd, str) else " && ".join(st.cmd),
                            file_deps, outs, param_keys, dict(st.meta or {})))
    finally:
        os.chdir(cwd)

    all_outputs = [o for _, _, _, outs, _, _ in raw for o in outs]
    stages = []
    for name, cmd, deps, outs, pkeys, meta in raw:
        inputs: list[str] = []
        for d in deps:
            # Persistent outputs (resume state) are not Snakemake outputs, so they cannot be inputs either;
            # the stage that writes them is still linked through its other outputs in the same folder.
            nested = [o for o in all_outputs if _is_under(o, d) and o not in outs and o not in persistent]
            inputs.extend(nested if nested else [d])
        declared_dirs = set((meta.get("snakemake") or {}).get("directories", []))
        dirs = tuple(o for o in outs if o in declared_dirs or (root / o).is_dir() or not PurePosixPath(o).suffix)
        persist = tuple(o for o in outs if o in persistent)
        stages.append(PipelineStage(name, cmd, tuple(dict.fromkeys(inputs)), tuple(outs), dirs, persist, pkeys, meta))
    return stages


def stage_edges(stages: list[PipelineStage]) -> set[tuple[str, str]]:
    """(producer, consumer) pairs: a consumer input equals or lies inside a producer's output."""
    edges = set()
    for cons in stages:
        for inp in cons.inputs:
            for prod in stages:
                if prod is cons:
                    continue
                if any(inp == o or _is_under(inp, o) or _is_under(o, inp) for o in prod.outputs):
                    edges.add((prod.name, cons.name))
    return edges


def params_fingerprint(stage: PipelineStage) -> str:
    """Stable text of the params a stage tracks: Snakemake reruns a rule when it changes."""
    return json.dumps(stage.params, sort_keys=True, default=str)
