"""The pipeline's stages, registered in one place: ``python -m marginlab <stage> [RUN] [--params FILE]``.

Each stage is the module ``marginlab.stages.<name>`` with the same three names: ``ERRORS`` (the library's
errors that mean bad input: printed as ``error: ...``, exit 2), ``add_arguments(parser)`` (its own options)
and ``run(args) -> int``. :func:`marginlab.cli.main` parses the command line, sets logging and the OpenMP
wait policy, and applies the error contract once for all of them. A stage module is imported only when
its stage runs, so ``marginlab report`` never loads torch; this registry imports nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from marginlab.name_registry import Registry

__all__ = ["STAGES", "StageInfo", "load_stage"]


@dataclass(frozen=True)
class StageInfo:
    """A command's name, one line for ``--help``, whether it runs once per run of the grid (``RUN``), and
    whether it is a stage of the pipeline (``dvc.yaml``) or a tool beside it (``compose``)."""

    name: str
    summary: str
    per_run: bool = False
    pipeline: bool = True


STAGES: Registry[StageInfo] = Registry("stage")
for _info in (
    StageInfo("prepare", "build the prepared-data directory (synthetic faces, or your data)"),
    StageInfo("brisque_model", "obtain the LIVE BRISQUE SVR and convert it for pyiqa"),
    StageInfo("quality", "BRISQUE and IQ of every prepared image"),
    StageInfo("train", "train one run of the grid into runs/<RUN>/", per_run=True),
    StageInfo("evaluate", "evaluate one trained run on every benchmark", per_run=True),
    StageInfo("analyze", "correlations, Table 1, comparisons and the claim verdicts"),
    StageInfo("gst", "Fig. 3: the gradient scaling term of every head"),
    StageInfo("report", "the self-contained HTML report"),
    StageInfo("compose", "a preset overlay (configs/<name>.yaml) applied to the default params.yaml", pipeline=False),
):
    STAGES.add(_info.name, _info)


def load_stage(name: str) -> ModuleType:
    """The module of stage ``name`` (``ValueError`` listing the stages for an unknown one).

    The one dynamic import of the command: :mod:`marginlab.pipeline.deps` resolves it from the stage
    named in a ``python -m marginlab <stage>`` command."""
    info = STAGES.get(name)
    return importlib.import_module(f"{__name__}.{info.name}")
