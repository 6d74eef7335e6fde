"""The path policy: where a params file may make the pipeline write, checked before anything runs.

DVC deletes a stage's outputs before the stage starts and prepare replaces its output folder as a
whole, so a params value that points an output at a user's photos (``data.prepared_dir: data``), at the
project root, or outside the project is data loss waiting to happen. :func:`check_paths` resolves every
location (symlinks and ``..`` included, the way the stages open them: relative to the project root)
and refuses, naming both keys and both paths:

- an output outside the project, or the project root itself, or one overlapping the project's own
  files (``src/``, ``params.yaml``, ``.git``, ...);
- an output that equals, contains or lies inside any input (``data/``, every configured data path);
- two outputs that equal, contain or lie inside each other.

The one exception is ``data.alignment.cache_dir``, a detection cache that may be shared between
projects: outside the project it is accepted only as an empty folder or one holding the alignment
cache's marker (:data:`marginlab.core.ownership.ALIGN_CACHE_MARKER`). Configured inputs must exist when
``require_inputs`` (the validator and prepare, the stage that reads them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from marginlab.core.ownership import ALIGN_CACHE_MARKER

if TYPE_CHECKING:  # pragma: no cover
    from marginlab.core.config import Params

__all__ = ["FIXED_OUTPUTS", "PROJECT_FILES", "Location", "PathPolicyError", "check_paths", "input_locations",
           "output_locations"]

#: Outputs whose place dvc.yaml fixes (not a params key).
FIXED_OUTPUTS = (("analysis outputs (dvc.yaml)", "analysis", "dir"), ("the report (dvc.yaml)", "reports/report.html", "file"),
                 ("released-model outputs (dvc.yaml)", "released", "dir"))
#: The project's own files and folders: no output may be, contain or lie inside one of them.
PROJECT_FILES = (".git", ".dvc", ".venv", ".ci", "src", "stages", "tests", "workflow", "configs", "bench", "params.yaml",
                 "dvc.yaml", "dvc.lock", "data.dvc", "pyproject.toml", "Makefile", "README.md", "environment.yml")


class PathPolicyError(ValueError):
    """Params that would make a stage write outside what it owns; the message lists every violation."""


@dataclass(frozen=True)
class Location:
    key: str  # the params key (or a description of a fixed place)
    given: str  # the value as written
    path: Path  # resolved: absolute, symlinks and .. followed
    kind: str  # "dir" | "file"

    def describe(self) -> str:
        return f"{self.key} {self.given!r} ({self.path})"


def _resolve(value: str, root: Path, *, expand_user: bool = False) -> Path:
    p = Path(value).expanduser() if expand_user else Path(value)
    return (p if p.is_absolute() else root / p).resolve()


def output_locations(params: "Params", root: Path) -> list[Location]:
    """Every place a stage writes, resolved against ``root``."""
    outs = [
        ("data.prepared_dir", params.data.prepared_dir, "dir"),
        ("quality.output_dir", params.quality.output_dir, "dir"),
        ("quality.model_path", params.quality.model_path, "file"),
        ("runs_dir", params.runs_dir, "dir"),
        ("data.alignment.cache_dir", params.data.alignment.cache_dir, "dir"),
        *FIXED_OUTPUTS,
    ]
    return [Location(key, value, _resolve(value, root), kind) for key, value, kind in outs]


def input_locations(params: "Params", root: Path) -> list[Location]:
    """Every configured input (paths as prepare reads them: ``~`` expanded, relative to ``root``)."""
    data = params.data
    given: list[tuple[str, str, str]] = [("data/ (the raw-data folder, data.dvc)", "data", "dir")]
    if data.train_rec:
        given.append(("data.train_rec", data.train_rec, "file"))
    if data.train_folders:
        given.append(("data.train_folders", data.train_folders, "dir"))
    given += [(f"data.val_bins[{i}]", path, "file") for i, path in enumerate(data.val_bins)]
    for i, ijb in enumerate(data.ijb):
        given += [(f"data.ijb[{i}].meta_dir", ijb.meta_dir, "dir"), (f"data.ijb[{i}].image_dir", ijb.image_dir, "dir")]
    if data.tinyface:
        given.append(("data.tinyface", data.tinyface, "dir"))
    if data.subset_index:
        given.append(("data.subset_index", data.subset_index, "file"))
    given += [(f"released.{name}.file", entry.file, "file") for name, entry in params.released.items()]
    return [Location(key, value, _resolve(value, root, expand_user=True), kind) for key, value, kind in given]


def _used_inputs(params: "Params", inputs: list[Location]) -> Iterator[Location]:
    """The inputs this configuration reads (a train_rec with data.source folders is not read)."""
    for loc in inputs:
        if loc.key.startswith("data/"):
            continue  # the raw-data folder may be empty or absent (a fresh clone)
        if loc.key.startswith("released."):
            continue  # read by the released stage alone, which says which entry lacks its file
        if loc.key == "data.train_rec" and params.data.source != "recordio":
            continue
        if loc.key == "data.train_folders" and params.data.source != "folders":
            continue
        yield loc


def _overlap(a: Path, b: Path) -> str | None:
    if a == b:
        return "is the same place as"
    if b in a.parents:
        return "lies inside"
    if a in b.parents:
        return "contains"
    return None


def _is_empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and next(path.iterdir(), None) is None
    except OSError:
        return False


def check_paths(params: "Params", root: str | Path, *, require_inputs: bool = False) -> None:
    """Raise :class:`PathPolicyError` listing every violation of the path policy (module docstring)."""
    root = Path(root).resolve()
    outputs, inputs = output_locations(params, root), input_locations(params, root)
    problems: list[str] = []
    for out in outputs:
        shared_cache = out.key == "data.alignment.cache_dir" and root not in out.path.parents and out.path != root
        if shared_cache:
            if not (out.path / ALIGN_CACHE_MARKER).is_file() and not _is_empty_dir(out.path):
                state = "does not exist" if not out.path.exists() else "is not empty and holds no marginlab cache marker"
                problems.append(
                    f"{out.describe()} lies outside the project ({root}) and {state}: a detection cache outside the "
                    f"project must be an empty folder you created, or one a marginlab prepare already used "
                    f"(holding {ALIGN_CACHE_MARKER})")
        elif out.path == root:
            problems.append(f"{out.describe()} is the project root itself: choose a folder inside it (e.g. the default)")
        elif root not in out.path.parents:
            problems.append(f"{out.describe()} lies outside the project ({root}): outputs must stay inside it")
        else:
            for name in PROJECT_FILES:
                how = _overlap(out.path, root / name)
                if how:
                    problems.append(f"{out.describe()} {how} the project's own {name!r} ({root / name})")
        for inp in inputs:
            how = _overlap(out.path, inp.path)
            if how:
                problems.append(f"{out.describe()} {how} the input {inp.describe()}: outputs are replaced or deleted, "
                                "inputs must never be")
    for i, a in enumerate(outputs):
        for b in outputs[i + 1:]:
            how = _overlap(a.path, b.path)
            if how:
                problems.append(f"{a.describe()} {how} {b.describe()}: each stage's outputs need a place of their own")
    if require_inputs:
        for inp in _used_inputs(params, inputs):
            if inp.kind == "dir" and not inp.path.is_dir():
                problems.append(f"{inp.key} {inp.given!r}: folder {inp.path} " +
                                ("is not a folder" if inp.path.exists() else "does not exist"))
            elif inp.kind == "file" and not inp.path.is_file():
                problems.append(f"{inp.key} {inp.given!r}: file {inp.path} " +
                                ("is not a regular file" if inp.path.exists() else "does not exist"))
    if problems:
        raise PathPolicyError("unsafe or missing paths (README 'Trust and safety'):\n" +
                              "\n".join(f"  - {p}" for p in problems))
