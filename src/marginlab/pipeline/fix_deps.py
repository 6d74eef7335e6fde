"""``python -m marginlab.pipeline.graph --fix-deps``: each stage's code deps in ``dvc.yaml`` rewritten from its
import graph (:mod:`marginlab.pipeline.deps`), the rest of the file left as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marginlab.pipeline import dvc_yaml
from marginlab.pipeline.deps import PACKAGE, StageDeps, overlaps, check_repo, minimal_deps


def _dep_path(entry: Any) -> str:
    """``- path`` or ``- path: {options}`` (a mapping entry) → ``path``."""
    return next(iter(entry)) if isinstance(entry, dict) else str(entry)


def fix_dvc_yaml(repo_root: str | Path = ".", package: str = PACKAGE) -> list[str]:
    """Rewrite every stage's code deps in ``dvc.yaml`` to the derived ones; return the changed stages.

    Code deps (paths under the code roots, or ``.py`` files, without ``${...}``) are replaced by
    :func:`minimal_deps` of the stage's import closure (the stage script first); every other dep keeps
    its place after them, and the rest of the file (comments included) is left as it is.
    """
    root = Path(repo_root).resolve()
    results = check_repo(root, package)
    by_group: dict[str, list[StageDeps]] = {}
    for r in results:
        by_group.setdefault(r.stage.split("@", 1)[0], []).append(r)
    path = root / "dvc.yaml"
    doc = dvc_yaml.load(path)
    changed = []
    for name, body in dvc_yaml.stage_bodies(doc).items():
        group = by_group.get(name)
        if not group:
            continue
        deps = body.get("deps")
        if deps is None:
            continue
        closure = sorted(set().union(*(r.closure for r in group)))
        roots = sorted(set().union(*(r.code_roots for r in group)))
        entries = list(dict.fromkeys(e for r in group for e in r.entries))

        def is_code(entry: Any, roots: list[str] = roots) -> bool:
            p = _dep_path(entry)
            return "${" not in p and (p.endswith(".py") or any(overlaps(p, r) for r in roots))

        new = minimal_deps(closure, root, entries, package) + [e for e in deps if not is_code(e)]
        if [_dep_path(e) for e in deps] != [_dep_path(e) for e in new]:
            deps.clear()
            deps.extend(new)
            changed.append(name)
    if changed:
        dvc_yaml.save(doc, path)
    return changed
