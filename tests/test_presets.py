"""Presets as overlays (marginlab.presets, `marginlab compose`): what an overlay holds, how it merges, and
what compose refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import ROOT, preset, tool_env

from marginlab.core.config import validate_params
from marginlab.presets import PresetError, compose_raw, compose_text

PRESETS = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def _differences_only(overlay: dict, default: dict, where: str = "") -> list[str]:
    """Keys of ``overlay`` whose value equals the default's (an overlay holds only what differs)."""
    same = []
    for key, value in overlay.items():
        dotted = f"{where}.{key}" if where else key
        if isinstance(value, dict) and isinstance(default.get(key), dict) and dotted != "runs":
            same += _differences_only(value, default[key], dotted)
        elif key in default and default[key] == value:
            same.append(dotted)
    return same


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_is_a_small_overlay_that_composes_to_valid_params(name):
    overlay = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    assert overlay["preset"] == name
    assert not _differences_only(overlay, DEFAULT), "an overlay repeats the default"
    params = validate_params(preset(name))
    assert params.preset == name and params.runs
    assert set(params.runs) == set(overlay["runs"])  # the grid is the preset's own, not the default's plus it


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_mappings_merge_runs_and_lists_replace(tmp_path):
    base = ROOT / "params.yaml"
    overlay = _write(tmp_path / "o.yaml", {
        "preset": "o", "train": {"epochs": 3}, "data": {"val_bins": []},
        "runs": {"cos-s0": {"head": "cosface", "seed": 0, "tags": ["main"]}},
    })
    raw = compose_raw(overlay, base=base)
    assert raw["train"]["epochs"] == 3 and raw["train"]["lr"] == DEFAULT["train"]["lr"]  # merged key by key
    assert list(raw["runs"]) == ["cos-s0"]  # replaced whole
    text = compose_text(overlay, base=base)
    assert "# The experiment grid" in text and "# marginlab: the embedded CPU default" in text  # base comments kept
    assert yaml.safe_load(text) == raw


def test_compose_refuses_a_base_that_is_already_a_preset_and_an_unnamed_overlay(tmp_path):
    smoke = _write(tmp_path / "smoke-params.yaml", preset("smoke"))
    with pytest.raises(PresetError, match="holds preset 'smoke', not the default"):
        compose_raw(ROOT / "configs" / "cpu-study.yaml", base=smoke)
    assert compose_raw(ROOT / "configs" / "cpu-study.yaml", base=smoke, explicit_base=True)["preset"] == "cpu-study"
    with pytest.raises(PresetError, match="an overlay names itself with a 'preset' key"):
        compose_raw(_write(tmp_path / "x.yaml", {"train": {"epochs": 1}}), base=ROOT / "params.yaml")
    scalar_train = _write(tmp_path / "y.yaml", {"preset": "y", "train": 1})
    mapping_train = _write(tmp_path / "z.yaml", {"preset": "z", "train": {"epochs": 1}})
    with pytest.raises(PresetError, match="'train' is a mapping in the overlay but int in the base"):
        compose_raw(scalar_train, mapping_train, base=ROOT / "params.yaml")


def _cli(*args: str, cwd: Path, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marginlab", "compose", *args], cwd=cwd, env=tool_env(),
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_cli_writes_atomically_and_refuses_invalid_results_and_its_own_input(tmp_path):
    base = tmp_path / "params.yaml"
    base.write_text((ROOT / "params.yaml").read_text())
    proc = _cli(str(ROOT / "configs" / "smoke.yaml"), "--out", "params.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert validate_params(yaml.safe_load(base.read_text())).preset == "smoke"

    base.write_text((ROOT / "params.yaml").read_text())
    bad = _write(tmp_path / "bad.yaml", {"preset": "bad", "train": {"epochs": -1}})
    proc = _cli(str(bad), "--out", "params.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "train.epochs" in proc.stderr
    assert "Traceback" not in proc.stderr and base.read_text() == (ROOT / "params.yaml").read_text()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]

    with base.open("w") as redirected:  # `marginlab compose configs/smoke.yaml > params.yaml`
        proc = _cli(str(ROOT / "configs" / "smoke.yaml"), cwd=tmp_path, stdout=redirected)
    assert proc.returncode == 2 and "which the shell emptied before compose could read it" in proc.stderr
