"""Package layout rules: one entry-point pattern for the stages, no module name used twice by accident."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "marginlab"
#: Module names that several packages use on purpose (each area's stage entry module).
PARALLEL_ON_PURPOSE = {"__init__.py", "__main__.py", "stage.py"}


def test_no_module_name_is_used_by_two_packages():
    where = defaultdict(list)
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "stages" and path.parent.parent == PACKAGE:
            continue  # marginlab/stages/<name>.py are named after their stage on purpose
        where[path.name].append(path.relative_to(PACKAGE).as_posix())
    clashes = {name: paths for name, paths in where.items() if len(paths) > 1 and name not in PARALLEL_ON_PURPOSE}
    assert not clashes, clashes


def test_every_stage_is_registered_once_with_the_same_three_names():
    """``marginlab.stages.<name>`` for every registered stage, each with ``ERRORS``, ``add_arguments`` and
    ``run(args)``, and nothing else in that folder; ``stages/<name>.py`` are one-call shims of the command."""
    from marginlab.stages import STAGES

    modules = {p.stem for p in (PACKAGE / "stages").glob("*.py")} - {"__init__"}
    assert modules == {name.replace("-", "_") for name in STAGES.names()}  # import-model: stages/import_model.py
    for name in STAGES.names():
        tree = ast.parse((PACKAGE / "stages" / f"{name.replace('-', '_')}.py").read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        assert {"add_arguments", "run"} <= defined and "ERRORS" in assigned, name
        args = [a.arg for fn in tree.body if isinstance(fn, ast.FunctionDef) and fn.name == "run" for a in fn.args.args]
        assert args == ["args", "params"], (name, args)
    pipeline = {name for name, info in STAGES.items() if info.pipeline}
    tools = {"compose", "embed", "verify", "import-model", "export-onnx", "fetch-model"}
    assert {p.stem for p in (ROOT / "stages").glob("*.py")} == pipeline == set(STAGES.names()) - tools
    dvc_stages = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert dvc_stages == pipeline  # every pipeline stage is in dvc.yaml, and no tool is
    for script in sorted((ROOT / "stages").glob("*.py")):
        text = script.read_text()
        assert f'main(["{script.stem}", *sys.argv[1:]])' in text and len(text.splitlines()) <= 10, script.name


def test_code_and_params_cite_only_what_a_user_has():
    """Docstrings and params comments point at the papers or public repositories, never at the project's
    private notes (``shared/reference/...``), which a clone does not contain."""
    texts = [*PACKAGE.rglob("*.py"), ROOT / "params.yaml", *(ROOT / "configs").glob("*.yaml"), *(ROOT / "stages").glob("*.py")]
    bad = [p.relative_to(ROOT).as_posix() for p in texts if "shared/" in p.read_text() or "reference/heads.md" in p.read_text()]
    assert not bad, bad


def test_tests_import_helpers_not_other_test_modules():
    """Shared test code lives in helper modules and conftest.py files, never in a ``test_*.py`` another imports."""
    tests = ROOT / "tests"
    offenders = []
    for path in tests.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(tests)} imports {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert not offenders, offenders


def _starts_processes(fn: ast.AST, helpers: set[str]) -> bool:
    """``fn`` calls ``subprocess.*``, a data-parallel run (``nproc``/``nproc_per_node`` other than 1), or a
    module-level helper that does."""
    for n in ast.walk(fn):
        if not isinstance(n, ast.Call):
            continue
        if isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name) and n.func.value.id == "subprocess":
            return True
        if any(k.arg in ("nproc", "nproc_per_node") and not (isinstance(k.value, ast.Constant) and k.value.value == 1)
               for k in n.keywords):
            return True
        if isinstance(n.func, ast.Name) and n.func.id in helpers:
            return True
    return False


def test_every_test_that_starts_processes_is_marked_slow():
    """`make test-fast` skips what is marked slow; a test that starts processes (a stage, a DDP group, a tool)
    takes seconds of start-up each, so it carries the mark (or its module does)."""
    unmarked = []
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n.targets[0]) and "slow" in ast.unparse(n.value)
               for n in tree.body):
            continue
        funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        helpers: set[str] = set()
        while True:  # module-level helpers that start processes, directly or through each other
            more = {name for name, f in funcs.items() if name not in helpers and _starts_processes(f, helpers)}
            if not more:
                break
            helpers |= more
        unmarked += [f"{path.relative_to(ROOT)}::{name}" for name in helpers & set(funcs) if name.startswith("test_")
                     and not any("mark.slow" in ast.unparse(d) for d in funcs[name].decorator_list)]
    assert not unmarked, unmarked


def test_licence_and_citation_agree_with_the_package():
    """LICENSE is the licence pyproject declares; CITATION.cff cites the AdaFace paper and this version of the tool."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"]["text"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["license"] == "MIT"
    assert cff["version"] == project["version"]
    paper = cff["preferred-citation"]
    assert paper["title"] == "AdaFace: Quality Adaptive Margin for Face Recognition" and paper["year"] == 2022
    assert [a["family-names"] for a in paper["authors"]] == ["Kim", "Jain", "Liu"]
