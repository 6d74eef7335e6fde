"""``dvc.yaml``'s ``params:`` lists, generated from the stages' declarations (:mod:`marginlab.stages`).

A stage reads only the keys it declares (:mod:`marginlab.core.params_view` raises on any other), and DVC
reruns it when one of them changes, as long as ``dvc.yaml`` lists the same keys: :func:`check` compares
them, :func:`fix` rewrites the lists (with each key's reason as a comment) and leaves the rest of the file
as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marginlab.core.params_view import ALL
from marginlab.pipeline import dvc_yaml

__all__ = ["check", "dvc_params", "fix"]

_DVC_TEMPLATE = {"{run}": "${key}", "{head}": "${item.head}"}


def dvc_params(declared: Any) -> list[str]:
    """The ``params:`` entries of a stage declaring ``declared`` (``{run}`` → ``${key}``, ``{head}`` →
    ``${item.head}``; :data:`ALL` → the whole file, ``params.yaml``)."""
    out = []
    for key in declared:
        if key == ALL:
            return ["params.yaml"]
        for ours, theirs in _DVC_TEMPLATE.items():
            key = key.replace(ours, theirs)
        out.append(key)
    return out


def _entry_key(entry: Any) -> str:
    """``- seed`` → ``seed``; ``- params.yaml:`` (a mapping: the whole file) → ``params.yaml``."""
    return next(iter(entry)) if isinstance(entry, dict) else str(entry)


def check(repo_root: str | Path = ".") -> list[str]:
    """One line per pipeline stage whose ``params:`` in ``dvc.yaml`` differs from its declaration."""
    import yaml

    from marginlab.stages import STAGES

    doc = yaml.safe_load((Path(repo_root) / "dvc.yaml").read_text()) or {}
    problems = []
    for name, body in dvc_yaml.stage_bodies(doc).items():
        info = STAGES.get(name)
        want = dvc_params(info.declared)
        have = [_entry_key(e) for e in body.get("params") or []]
        if have != want:
            problems.append(f"{name}: dvc.yaml params {have} but the stage declares {want}")
    return problems


def fix(repo_root: str | Path = ".") -> list[str]:
    """Rewrite each stage's ``params:`` from its declaration (reasons as comments); the changed stages."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    from marginlab.stages import STAGES

    path = Path(repo_root) / "dvc.yaml"
    doc = dvc_yaml.load(path)
    changed = []
    stage_docs = doc.get("stages") or {}
    for name, body in dvc_yaml.stage_bodies(doc).items():
        info = STAGES.get(name)
        want = dvc_params(info.declared)
        reasons = list((info.params or {}).values())
        seq = CommentedSeq()
        indent = 8 if body is not stage_docs[name] else 6  # a foreach stage's body sits one level deeper
        for i, key in enumerate(want):
            seq.append(CommentedMap({key: None}) if key == "params.yaml" else key)
            if i < len(reasons) and reasons[i] and key != "params.yaml":  # a mapping entry keeps no comment
                seq.yaml_add_eol_comment(f"# {reasons[i]}", i, column=indent + len(key) + 4)
        old = body.get("params") or []
        same_keys = [_entry_key(e) for e in old] == want
        notes = [f"# {r}" if r and k != "params.yaml" else "" for k, r in zip(want, reasons)]
        same_notes = _comments(old) == notes
        if same_keys and same_notes:
            continue
        body["params"] = seq
        changed.append(name)
    if changed:
        dvc_yaml.save(doc, path)
    return changed


def _comments(seq: Any) -> list[str]:
    """The end-of-line comment of each entry of a round-tripped sequence ('' where none)."""
    items = getattr(getattr(seq, "ca", None), "items", {}) or {}
    out = []
    for i in range(len(seq)):
        token = (items.get(i) or [None])[0]
        out.append(token.value.strip() if token is not None else "")
    return out
