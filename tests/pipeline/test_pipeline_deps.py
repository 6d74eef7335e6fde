"""Stage code dependencies derived from the import graph (marginlab.pipeline.deps) and the dvc.yaml check.

A toy package exercises every import form the analysis follows; the real dvc.yaml must declare every
file each stage imports (``python -m marginlab.pipeline.graph --check-deps``), and the check must fail,
naming the file, once a dependency is removed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest
import yaml
from pipeline_helpers import ROOT, copy_repo, tool_env

from marginlab.pipeline.deps import (
    check_stage_deps,
    covers,
    import_closure,
    minimal_deps,
    parse_imports,
    stage_entries,
)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text))


@pytest.fixture
def toy(tmp_path) -> Path:
    """src/marginlab with one module per import form, and two stage scripts."""
    write(tmp_path, {
        "src/marginlab/__init__.py": "",
        "src/marginlab/config.py": "import yaml\nfrom marginlab.io import write_json\n",
        "src/marginlab/io.py": "import json\n",
        "src/marginlab/unused.py": "",
        # a package whose __init__ imports one of two submodules
        "src/marginlab/data/__init__.py": "from marginlab.data.formats import read\n",
        "src/marginlab/data/formats.py": "from . import errors\n\ndef read(): ...\n",
        "src/marginlab/data/errors.py": "",
        "src/marginlab/data/synthetic.py": "",
        # lazy import inside a function; TYPE_CHECKING-only import; ``from pkg import submodule``
        "src/marginlab/train/__init__.py": "",
        "src/marginlab/train/loop.py": """
            from typing import TYPE_CHECKING
            from marginlab.models import build
            if TYPE_CHECKING:
                from marginlab.data import synthetic
            def run():
                from marginlab.train import optim
                return optim
            """,
        "src/marginlab/train/optim.py": "from ..io import write_json\n",
        "src/marginlab/models.py": "",
        # a registry importing its package's modules dynamically; package data
        "src/marginlab/heads/__init__.py": "from marginlab.heads.registry import discover\ndiscover()\n",
        "src/marginlab/heads/registry.py": """
            import importlib, pkgutil
            def discover():
                import marginlab.heads as package
                for info in pkgutil.iter_modules(package.__path__):
                    importlib.import_module(f"{package.__name__}.{info.name}")
            """,
        "src/marginlab/heads/arcface.py": "",
        "src/marginlab/heads/sub/__init__.py": "",
        "src/marginlab/report/__init__.py": "import importlib\nimportlib.import_module('marginlab.io')\n",
        "src/marginlab/report/templates/page.html.j2": "<html>",
        "stages/train.py": "import marginlab.train.loop\nfrom marginlab.config import load\n",
        "stages/report.py": "from marginlab import report\n",
    })
    (tmp_path / "src/marginlab/__pycache__").mkdir()
    (tmp_path / "src/marginlab/__pycache__/io.cpython-311.pyc").write_bytes(b"")
    return tmp_path


def test_closure_follows_every_import_form(toy):
    got = import_closure("stages/train.py", toy)
    assert got == {
        "stages/train.py",
        "src/marginlab/__init__.py",
        "src/marginlab/config.py",
        "src/marginlab/io.py",  # through config (absolute) and optim (relative ..io)
        "src/marginlab/models.py",
        "src/marginlab/train/__init__.py",  # importing marginlab.train.loop runs it
        "src/marginlab/train/loop.py",
        "src/marginlab/train/optim.py",  # imported lazily inside run()
    }
    # the TYPE_CHECKING import, unimported modules and __pycache__ stay out
    assert not any("synthetic" in f or "unused" in f or "__pycache__" in f for f in got)


def test_closure_package_init_submodules_dynamic_imports_and_data(toy):
    assert import_closure("marginlab.data", toy) == {
        "src/marginlab/__init__.py", "src/marginlab/data/__init__.py", "src/marginlab/data/formats.py",
        "src/marginlab/data/errors.py",  # from . import errors: a submodule
    }
    heads = import_closure("marginlab.heads", toy)
    assert {"src/marginlab/heads/arcface.py", "src/marginlab/heads/sub/__init__.py"} <= heads  # pkgutil discovery
    report = import_closure("stages/report.py", toy)
    assert "src/marginlab/report/templates/page.html.j2" in report  # package data
    assert "src/marginlab/io.py" in report  # import_module with a literal name


def test_parse_imports_relative_and_from_names():
    found = parse_imports("from . import a\nfrom ..b import c\nfrom x.y import *\n", "pkg.sub.mod", False)
    assert found.names == {"pkg.sub", "pkg.sub.a", "pkg.b", "pkg.b.c", "x.y"}
    assert not found.dynamic
    assert parse_imports("import importlib\nimportlib.import_module(name)\n", "pkg.m", False).dynamic


def test_stage_entries():
    assert stage_entries("python stages/train.py 'adaface-s0'") == ["stages/train.py"]
    assert stage_entries("python -u stages/a.py --x 1 && python3 -m marginlab.config") == ["stages/a.py", "marginlab.config"]
    assert stage_entries("dvc exp show") == []
    assert stage_entries("python -m marginlab train 'adaface-s0'") == ["marginlab.__main__", "marginlab.stages.train"]
    assert stage_entries("python -m marginlab --help") == ["marginlab.__main__"]


def test_a_command_stage_depends_on_its_own_stage_module_only():
    """``python -m marginlab report``: the registry's dynamic import is resolved to the named stage, so
    the report does not depend on (nor rerun for) the training code, and training does not on the report."""
    root = Path(__file__).resolve().parents[2]
    report = check_stage_deps("report", "python -m marginlab report", [], root).closure
    train = check_stage_deps("train@x", "python -m marginlab train x", [], root).closure
    assert {"src/marginlab/__main__.py", "src/marginlab/core/cli.py", "src/marginlab/stages/__init__.py",
            "src/marginlab/stages/report.py"} <= set(report)
    assert not any(f.startswith(("src/marginlab/train/", "src/marginlab/heads/")) for f in report)
    assert "src/marginlab/presets.py" not in report  # `marginlab compose` only: no stage runs it
    assert "src/marginlab/stages/train.py" in train and not any(
        f.startswith("src/marginlab/stages/") and f.endswith(("report.py", "evaluate.py")) for f in train)


def test_check_stage_deps_missing_unused_and_folders(toy):
    cmd = "python stages/train.py RUN"
    full = ["stages/train.py", "src/marginlab/__init__.py", "src/marginlab/config.py", "src/marginlab/io.py",
            "src/marginlab/models.py", "src/marginlab/train", "prepared"]
    ok = check_stage_deps("train@RUN", cmd, full, toy)
    assert ok.ok and ok.missing == [] and ok.unused == [] and ok.broader == {}
    assert "prepared" not in ok.declared  # data deps are not code deps

    # remove one dependency: the check names it
    less = check_stage_deps("train@RUN", cmd, [d for d in full if d != "src/marginlab/io.py"], toy)
    assert not less.ok and less.missing == ["src/marginlab/io.py"]

    # a folder dep covers what it holds; unused and broader deps are information
    broad = check_stage_deps("train@RUN", cmd, ["stages/train.py", "src/marginlab", "src/marginlab/heads"], toy)
    assert broad.ok and broad.unused == ["src/marginlab/heads"]
    assert "src/marginlab/unused.py" in broad.broader["src/marginlab"]


def test_minimal_deps_collapses_fully_used_folders(toy):
    closure = import_closure("stages/train.py", toy)
    assert minimal_deps(closure, toy, ["stages/train.py"]) == [
        "stages/train.py", "src/marginlab/__init__.py", "src/marginlab/config.py", "src/marginlab/io.py",
        "src/marginlab/models.py", "src/marginlab/train",
    ]
    assert all(any(covers(d, f) for d in minimal_deps(closure, toy)) for f in closure)


# ----------------------------------------------------------------------------------------- the repo
def test_the_ground_floor_package_is_declared_whole(toy):
    """``src/marginlab/core`` (command line, params schema, registries, layouts, I/O) is one dep of a stage
    that imports any of its modules, though none imports all of them; the check accepts it as used."""
    write(toy, {"src/marginlab/core/__init__.py": "", "src/marginlab/core/io.py": "",
                "src/marginlab/core/device.py": "", "stages/core_user.py": "from marginlab.core import io\n"})
    closure = check_stage_deps("x", "python stages/core_user.py", [], toy).closure
    assert "src/marginlab/core/device.py" not in closure
    deps = minimal_deps(closure, toy, ["stages/core_user.py"])
    assert deps == ["stages/core_user.py", "src/marginlab/__init__.py", "src/marginlab/core"]
    res = check_stage_deps("x", "python stages/core_user.py", deps, toy)
    assert res.ok and not res.unused and not res.broader
    assert "src/marginlab/core" not in minimal_deps(import_closure("marginlab.data", toy), toy)
    declared = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in declared.items():
        deps = [str(d) for d in stage.get("do", stage)["deps"]]
        assert "src/marginlab/core" in deps and not any(d.startswith("src/marginlab/core/") for d in deps), name


def check_deps(repo: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marginlab.pipeline.graph", "--check-deps", *flags],
                          cwd=repo, env=tool_env(), capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_dvc_yaml_declares_every_imported_file():
    """The acceptance check: every stage's code deps are complete (and none is unused)."""
    proc = check_deps(ROOT, "--strict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "every stage declares every file it imports" in proc.stdout
    assert "unused" not in proc.stdout


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("deps") / "repo")


@pytest.mark.slow
def test_check_fails_when_a_dependency_is_removed_and_fix_restores_it(repo_copy):
    import yaml

    dvc_yaml = repo_copy / "dvc.yaml"
    original = dvc_yaml.read_text()
    deps = yaml.safe_load(original)["stages"]["train"]["do"]["deps"]
    removed = next(d for d in deps if d.startswith("src/marginlab/") and d.endswith(".py"))
    lines = original.splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "train:")
    idx = next(i for i in range(start, len(lines)) if lines[i].strip() == f"- {removed}")
    dvc_yaml.write_text("".join(lines[:idx] + lines[idx + 1:]))

    proc = check_deps(repo_copy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"missing: {removed}" in proc.stdout
    assert "train@*: MISSING 1" in proc.stdout

    fixed = subprocess.run([sys.executable, "-m", "marginlab.pipeline.graph", "--fix-deps"], cwd=repo_copy,
                           env=tool_env(), capture_output=True, text=True, timeout=300, check=False)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert dvc_yaml.read_text() == original  # derived deps are what dvc.yaml holds, comments kept


@pytest.mark.slow
def test_the_released_stage_declares_its_imports(repo_copy):
    """The default params configure no released model, so DVC resolves no released stage there and the
    check above never sees it: with one entry, its deps are complete too."""
    params = repo_copy / "params.yaml"
    original = params.read_text()
    assert "\nreleased: {}\n" in original
    params.write_text(original.replace("\nreleased: {}\n", "\nreleased:\n  probe: {file: models/probe.onnx, format: onnx}\n"))
    try:
        proc = check_deps(repo_copy, "--strict")
    finally:
        params.write_text(original)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "released@probe: ok" in proc.stdout and "unused" not in proc.stdout


def test_deps_exempt_leaves_schema_only_imports_out_of_a_stage():
    """prepare imports the heads' declarations (head_specs.py) only through the params schema, and the
    heads' torch code not at all: dvc.yaml exempts the declarations (meta.deps_exempt), so changing a
    head's default does not re-prepare the data; the check honours the exemption and nothing else."""
    import yaml

    from marginlab.pipeline.deps import check_stage_deps

    root = Path(__file__).resolve().parents[2]
    spec = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert spec["prepare"]["meta"]["deps_exempt"] == ["src/marginlab/head_specs.py"]
    assert "src/marginlab/head_specs.py" not in spec["prepare"]["deps"]
    strict = check_stage_deps("prepare", spec["prepare"]["cmd"], spec["prepare"]["deps"], root)
    assert strict.missing == ["src/marginlab/head_specs.py"]
    exempted = check_stage_deps("prepare", spec["prepare"]["cmd"], spec["prepare"]["deps"], root,
                                exempt=["src/marginlab/head_specs.py"])
    assert exempted.ok and not any(f.startswith("src/marginlab/head") for f in exempted.closure)
    assert {"src/marginlab/heads", "src/marginlab/head_specs.py"} <= set(spec["train"]["do"]["deps"])
