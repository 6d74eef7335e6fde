"""Evaluation-set formats behind one registry: verification ``.bin``, IJB, TinyFace (and whatever is added).

Each format is one module of this package whose :class:`~.evalset.EvalSet` subclass is decorated with
:func:`~.evalset.register_eval_set`; the package imports every module of its folder on first import, so
quality scoring, evaluation, analysis and the report find a new format without another edit. Torch-free.
"""

from __future__ import annotations

import importlib
import pkgutil

from marginlab.evalsets.evalset import (
    EVAL_SETS,
    Embed,
    EvalSet,
    EvalTools,
    GroundTruthFile,
    SetResult,
    SplitSource,
    by_family,
    eval_sets,
    register_eval_set,
)


def discover() -> None:
    """Import every module of this package (each format registers itself)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")


discover()

__all__ = [
    "EVAL_SETS",
    "Embed",
    "EvalSet",
    "EvalTools",
    "GroundTruthFile",
    "SetResult",
    "SplitSource",
    "by_family",
    "discover",
    "eval_sets",
    "register_eval_set",
]
