"""Read DVC's resolved stage list (grids already expanded) into a runner-neutral graph.

dvc.yaml is the single definition of the study. ``load_stages`` asks DVC for its resolved stages
(``Repo.index.stages``: commands, file dependencies, outputs, params keys) and turns each into a
:class:`PipelineStage`. A dependency on a directory that *contains* other stages' outputs (e.g. the
analysis stage depending on ``runs``) is expanded into those outputs, because Snakemake links jobs by
exact output paths. ``stage_edges`` gives the producer → consumer edges both tools must agree on.

DVC's ``index`` API is internal: dvc is pinned exactly in pyproject.toml and tests/pipeline/test_pipeline_graph.py
compares this graph with ``dvc dag`` and ``snakemake --rulegraph``.
"""

from __future__ import annotations

import json
import os
import posixpath
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
    whole_params: bool = False  # tracks every key of params.yaml (``- params.yaml:`` with no key list)

    @property
    def snakemake(self) -> dict[str, Any]:
        return dict((self.meta or {}).get("snakemake", {}) or {})


def rule_name(stage_name: str) -> str:
    """Snakemake rule names are identifiers: ``train@ada-h0.22`` → ``train__ada_h0_22``."""
    out = stage_name.replace("@", "__")
    return "".join(c if c.isalnum() or c == "_" else "_" for c in out)


def _is_under(child: str, parent: str) -> bool:
    """Whether path ``child`` lies strictly inside folder ``parent`` (normalised POSIX paths, no I/O)."""
    c, p = posixpath.normpath(child), posixpath.normpath(parent)
    return c != p and (p == "." or c.startswith(p.rstrip("/") + "/"))


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

    from marginlab.core.config import load_params
    from marginlab.core.safe_yaml import load_bounded

    root = Path(repo_root).resolve()
    params_file = root / "params.yaml"
    validated = None
    if params_file.exists():
        # Validate before any rule exists: run names become shell arguments of the generated commands.
        validated = load_params(params_file, root=root)
    all_params = load_bounded(params_file.read_text()) if params_file.exists() else {}  # the bounded safe_load
    cwd = os.getcwd()
    try:
        os.chdir(root)
        with Repo(str(root)) as repo:
            raw, persistent = [], set()
            for st in repo.index.stages:
                if not getattr(st, "cmd", None):
                    continue  # .dvc files (data.dvc) are data, not jobs
                file_deps, param_keys, whole = [], {}, False
                for dep in st.deps:
                    keys = getattr(dep, "params", None)
                    if keys is not None:
                        whole = whole or not keys  # an empty key list: the whole file
                        for k in keys:
                            param_keys[k] = _lookup(all_params, k)
                    else:
                        file_deps.append(dep.def_path)
                outs = [o.def_path for o in st.outs]
                persistent.update(o.def_path for o in st.outs if o.persist)
                raw.append((st.addressing, st.cmd if isinstance(st.cmd, str) else " && ".join(st.cmd),
                            file_deps, outs, param_keys, dict(st.meta or {}), whole))
    finally:
        os.chdir(cwd)

    all_outputs = [o for _, _, _, outs, _, _, _ in raw for o in outs]
    stages = []
    for name, cmd, deps, outs, pkeys, meta, whole in raw:
        inputs: list[str] = []
        for d in deps:
            # Persistent outputs (resume state) are not Snakemake outputs, so they cannot be inputs either;
            # the stage that writes them is still linked through its other outputs in the same folder.
            nested = [o for o in all_outputs if _is_under(o, d) and o not in outs and o not in persistent]
            inputs.extend(nested if nested else [d])
        declared_dirs = set((meta.get("snakemake") or {}).get("directories", []))
        dirs = tuple(o for o in outs if o in declared_dirs or (root / o).is_dir() or not PurePosixPath(o).suffix)
        persist = tuple(o for o in outs if o in persistent)
        if whole:
            pkeys = {**pkeys, **{k: v for k, v in (all_params or {}).items() if k not in pkeys}}
        if validated is not None and name.startswith("train@"):
            meta = {**meta, "snakemake": train_resources(validated, name.split("@", 1)[1], meta.get("snakemake") or {})}
        stages.append(PipelineStage(name, cmd, tuple(dict.fromkeys(inputs)), tuple(outs), dirs, persist, pkeys, meta,
                                    whole))
    return stages


def train_resources(params: Any, run_name: str, hints: dict[str, Any]) -> dict[str, Any]:
    """Snakemake hints of ``train@run_name`` from the run's own settings: one GPU per data-parallel
    process (``train.distributed.nproc_per_node``; none when the run trains on the CPU) and the
    stage's per-process ``threads`` hint times the processes."""
    train = params.run(run_name).train
    n = train.distributed.nproc_per_node
    out = dict(hints)
    out["gpu"] = 0 if train.device == "cpu" else n
    out["threads"] = int(hints.get("threads", 1)) * n
    return out


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


def main(argv: list[str] | None = None) -> int:
    """``python -m marginlab.pipeline.graph --check-deps``: every stage declares the code it imports."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m marginlab.pipeline.graph", description=main.__doc__)
    parser.add_argument("--repo", default=".", help="repository root holding dvc.yaml (default: .)")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check-deps", action="store_true",
                        help="compare each stage's code deps in dvc.yaml with its import graph and its params with "
                             "its declaration; exit 1 when a file it imports or a key it reads is not declared")
    action.add_argument("--fix-deps", action="store_true",
                        help="rewrite each stage's code deps and params in dvc.yaml to the derived and declared ones "
                             "(other deps kept)")
    action.add_argument("--print", action="store_true", help="print the resolved stages (name, inputs, params)")
    parser.add_argument("--strict", action="store_true",
                        help="with --check-deps: also fail on declared code deps the stage never imports")
    parser.add_argument("--suggest", action="store_true", help="with --check-deps: print each stage's derived code deps")
    args = parser.parse_args(argv)

    from marginlab.pipeline import deps

    if args.print:
        for st in load_stages(args.repo):
            print(json.dumps({"name": st.name, "cmd": st.cmd, "inputs": st.inputs, "params": sorted(st.params)}))
        return 0
    from marginlab.pipeline import stage_params

    if args.fix_deps:
        from marginlab.pipeline.fix_deps import fix_dvc_yaml

        changed = fix_dvc_yaml(args.repo)
        print(f"dvc.yaml: code deps rewritten for {', '.join(changed)}" if changed else "dvc.yaml: code deps already complete")
        changed = stage_params.fix(args.repo)
        print(f"dvc.yaml: params rewritten for {', '.join(changed)}" if changed else "dvc.yaml: params as declared")
        args.strict = True  # then verify the result
    results = deps.check_repo(args.repo)
    print(deps.format_report(results, suggest=args.suggest, repo_root=args.repo))
    params_problems = stage_params.check(args.repo)
    print("\n".join(f"params: FAIL: {p}" for p in params_problems) or "params: every stage's dvc.yaml params are its declaration")
    failed = any(not r.ok or (args.strict and r.unused) for r in results) or bool(params_problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
