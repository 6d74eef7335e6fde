"""Package layout rules: one entry-point pattern for the stages, no module name used twice by accident."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "marginlab"
#: Module names that several packages use on purpose (each area's stage entry module).
PARALLEL_ON_PURPOSE = {"__init__.py", "__main__.py", "stage.py"}


def test_no_module_name_is_used_by_two_packages():
    where = defaultdict(list)
    for path in PACKAGE.rglob("*.py"):
        where[path.name].append(path.relative_to(PACKAGE).as_posix())
    clashes = {name: paths for name, paths in where.items() if len(paths) > 1 and name not in PARALLEL_ON_PURPOSE}
    assert not clashes, clashes


def test_every_stage_script_calls_one_run_function_named_after_its_stage():
    """``stages/<name>.py`` imports ``run_<name>`` from marginlab and calls it (the thin-CLI pattern)."""
    for script in sorted((ROOT / "stages").glob("*.py")):
        tree = ast.parse(script.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and (node.module or "").startswith("marginlab") for alias in node.names}
        runs = {name for name in imported if name.startswith("run_") and name != "run_stage"}
        assert runs == {f"run_{script.stem}"}, (script.name, runs)
        called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert f"run_{script.stem}" in called and "run_stage" in called, script.name
