"""The environment is pinned in one place (pyproject.toml); environment.yml must mirror it."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for group in project["optional-dependencies"].values() for r in group]
    pins = {}
    for req in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", req.strip())
        assert m, f"pyproject.toml dependency {req!r} is not pinned exactly (name==version)"
        pins[m.group(1).lower()] = m.group(2)
    return pins


def _environment_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip_list = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    pins = {}
    for req in pip_list:
        if req.startswith("-e"):
            continue
        name, _, version = req.partition("==")
        assert version, f"environment.yml pip entry {req!r} is not pinned exactly"
        pins[name.lower()] = version
    return pins


def test_environment_yml_matches_pyproject():
    assert _environment_pins() == _pyproject_pins()


def test_installed_versions_match_pins():
    mismatched = {}
    for name, version in _pyproject_pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            mismatched[name] = (version, None)
            continue
        if installed.split("+")[0] != version:
            mismatched[name] = (version, installed)
    assert not mismatched, f"installed packages differ from the pins (pinned, installed): {mismatched}"


@pytest.mark.parametrize("name", ["torch", "torchvision"])
def test_torch_pins_are_the_required_ones(name):
    assert _pyproject_pins()[name] == {"torch": "2.14.1", "torchvision": "0.29.1"}[name]


def _no_deps_pins() -> dict[str, str]:
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["marginlab"]["no-deps-dependencies"]
    return dict(p.split("==") for p in pins)


def test_no_deps_packages_are_installed_by_makefile_and_named_in_environment_yml():
    # facenet-pytorch is installed with --no-deps (its metadata pins an old torch/numpy/Pillow); the
    # Makefile does it, environment.yml tells conda users to, both with pyproject's pin.
    makefile = (ROOT / "Makefile").read_text()
    env = (ROOT / "environment.yml").read_text()
    for name, version in _no_deps_pins().items():
        assert re.search(rf"pip install [^\n]*--no-deps {re.escape(name)}=={re.escape(version)}\b", makefile), name
        assert f"pip install --no-deps {name}=={version}" in env, name
        assert metadata.version(name) == version
