"""What a stage may read of the params file: a view of the validated :class:`~marginlab.core.config.Params` that
raises on any key outside the stage's declaration.

DVC reruns a stage when a params key it declares changes, so a key read but not declared is a stale
result waiting to happen. Each stage declares its keys once (:mod:`marginlab.stages`); ``dvc.yaml``'s
``params:`` lists are generated from the same declarations (:mod:`marginlab.pipeline.stage_params`), and
the stage receives :func:`restrict`\\ 's view, so reading anything else fails the first time it runs.

Declared keys are dotted paths; a key covers its sub-keys (``train`` covers ``train.lr``), ``*`` the
whole file. In a per-run stage ``{run}`` stands for the run's name and ``{head}`` for its head.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["ALL", "UndeclaredParamError", "covered", "expand", "restrict"]

ALL = "*"  #: the declaration of a stage that reads the whole file

# Attribute names through which a pydantic model is taken whole.
_WHOLE_READS = frozenset(
    {
        "model_dump",
        "model_dump_json",
        "model_copy",
        "__copy__",
        "__deepcopy__",
        "__getstate__",
        "__reduce__",
        "__reduce_ex__",
        "__iter__",
        "__eq__",
        "__repr__",
        "__str__",
    }
)


class UndeclaredParamError(RuntimeError):
    """A stage read a params key it does not declare: a programming error, not a bad params file."""


def covered(key: str, declared: Iterable[str]) -> bool:
    """A declared key covers itself and its sub-keys; :data:`ALL` covers everything."""
    return any(d == ALL or key == d or key.startswith(d + ".") for d in declared)


def _reachable(key: str, declared: Iterable[str]) -> bool:
    """Some declared key lies at or below ``key`` (the section may be entered to read it)."""
    return any(d == ALL or d == key or d.startswith(key + ".") or key.startswith(d + ".") for d in declared)


def expand(declared: Iterable[str], run: str | None = None, head: str | None = None) -> tuple[str, ...]:
    """The declaration with ``{run}`` (the entry's name) and ``{head}`` (a run's head) filled in; a key that
    needs one that is not given raises."""
    out = []
    for key in declared:
        if ("{run}" in key and run is None) or ("{head}" in key and head is None):
            raise ValueError(f"params key {key!r} needs the run: give run and head")
        out.append(key.format(run=run, head=head) if "{" in key else key)
    return tuple(out)


class _Rules:
    def __init__(self, declared: tuple[str, ...], stage: str):
        self.declared, self.stage = declared, stage

    def check(self, path: tuple) -> None:
        key = ".".join(str(p) for p in path)
        if not covered(key, self.declared):
            raise UndeclaredParamError(
                f"stage {self.stage!r} read params key {key!r}, which it does not declare "
                f"(it declares: {', '.join(self.declared) or 'nothing'}). Add it to the stage's declaration in "
                "marginlab/stages/__init__.py and regenerate dvc.yaml (python -m marginlab.pipeline.graph "
                "--fix-deps), so that DVC reruns the stage when it changes"
            )

    def wrap(self, value: Any, path: tuple) -> Any:
        """``value`` read at ``path``: whole if covered, a narrower view of a section or mapping, else refused."""
        from pydantic import BaseModel

        key = ".".join(str(p) for p in path)
        if covered(key, self.declared):
            return value
        if isinstance(value, (BaseModel, Mapping)) and _reachable(key, self.declared):
            return _SectionView(value, path, self) if isinstance(value, BaseModel) else _MappingView(value, path, self)
        self.check(path)  # raises
        return value


class _SectionView:
    """A pydantic section seen through the rules: fields checked, methods run against the view."""

    __slots__ = ("_obj", "_path", "_rules")

    def __init__(self, obj: Any, path: tuple, rules: _Rules):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_rules", rules)

    def __getattr__(self, name: str) -> Any:
        obj, path, rules = self._obj, self._path, self._rules
        cls = type(obj)
        if name in cls.model_fields:
            return rules.wrap(getattr(obj, name), path + (name,))
        if name in _WHOLE_READS:
            rules.check(path)
            return getattr(obj, name)
        attr = getattr(cls, name, None)
        if isinstance(attr, types.FunctionType):  # a method of the schema (Params.run): its reads are checked too
            return types.MethodType(attr, self)
        if isinstance(attr, property) and attr.fget is not None:
            return attr.fget(self)
        return getattr(obj, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._rules.check(self._path + (name,))
        setattr(self._obj, name, value)

    def __repr__(self) -> str:
        return f"<params view of {'.'.join(map(str, self._path)) or 'params'} for stage {self._rules.stage!r}>"


class _MappingView(Mapping):
    """A mapping section (``runs``, ``heads``) seen through the rules: an entry read checks its own key;
    iterating, sizing or listing it reads the whole mapping."""

    def __init__(self, obj: Mapping, path: tuple, rules: _Rules):
        self._obj, self._path, self._rules = obj, path, rules

    def __getitem__(self, key: Any) -> Any:
        path = self._path + (key,)
        if not _reachable(".".join(str(p) for p in path), self._rules.declared):
            self._rules.check(path)  # before the lookup: a missing undeclared key must not pass as a default
        return self._rules.wrap(self._obj[key], path)

    def __contains__(self, key: object) -> bool:
        if not _reachable(".".join(str(p) for p in (*self._path, key)), self._rules.declared):
            self._rules.check(self._path + (key,))
        return key in self._obj

    def __iter__(self) -> Iterator:
        self._rules.check(self._path)
        return iter(self._obj)

    def __len__(self) -> int:
        self._rules.check(self._path)
        return len(self._obj)


def restrict(params: Any, declared: Iterable[str], *, stage: str, run: str | None = None, section: str = "runs") -> Any:
    """``params`` as stage ``stage`` may see it: only the ``declared`` keys (``{run}`` filled in with ``run``, an
    entry of ``section``; ``{head}`` with its head when the section is ``runs``). The whole object when the
    declaration is :data:`ALL`."""
    declared = tuple(declared)
    if ALL in declared:
        return params
    head = None
    if run is not None:
        entries = getattr(params, section)
        if run not in entries:
            from marginlab.core.config import ConfigError

            what = "run" if section == "runs" else f"entry of {section!r}"
            raise ConfigError(f"{what} {run!r} is not in params {section!r}; known: {', '.join(entries) or 'none'}")
        head = entries[run].head if section == "runs" else None
    return _SectionView(params, (), _Rules(expand(declared, run, head), stage))
