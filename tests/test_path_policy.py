"""The path policy (marginlab.core.paths) and its second line of defence (marginlab.core.io.atomic_dir's marker).

Issue #21's findings, each as a test that failed before: a params file pointed ``data.prepared_dir`` at
the user's photos (prepare replaced them, exit 0), ``runs_dir`` inside ``prepared_dir`` (the next prepare
deleted the runs), ``runs_dir: ..`` and ``data.alignment.cache_dir: /`` (writes outside the project), a
cache inside the photo folder, and a lexical check that ``x/../prepared/cache`` slipped through.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from marginlab.core.config import ConfigError, load_params, validate_params
from marginlab.data.formats import encode_jpeg
from marginlab.core.io import OutputWriteError, atomic_dir, check_replaceable
from marginlab.core.ownership import ALIGN_CACHE_MARKER, OUTPUT_MARKER
from marginlab.core.paths import PathPolicyError, check_paths
from pipeline_helpers import ROOT
from pipeline_helpers import preset as preset_params


def _photos(root: Path, identities: int = 3, per_identity: int = 2) -> list[Path]:
    written = []
    rng = np.random.default_rng(0)
    for i in range(identities):
        for k in range(per_identity):
            path = root / f"person{i}" / f"{k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_jpeg(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)))
            written.append(path)
    return written


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """An empty project folder with the user's photos under data/photos, as the working directory."""
    root = tmp_path / "project"
    _photos(root / "data" / "photos")
    monkeypatch.chdir(root)
    return root


def _folders(**data) -> dict:
    return {"data": {"source": "folders", "train_folders": "data/photos", **data}}


def _violations(raw: dict, root: Path, **kw) -> str:
    with pytest.raises(PathPolicyError) as info:
        check_paths(validate_params(raw), root, **kw)
    return str(info.value)


# ------------------------------------------------------------------------------------ the policy
def test_defaults_and_presets_pass(project):
    check_paths(validate_params({}), project)
    check_paths(validate_params(_folders()), project, require_inputs=True)
    for preset in ("smoke", "cpu-study", "scale-study", "focused", "paper-ir100-ms1mv2", "paper-ablation-ir18"):
        check_paths(validate_params(preset_params(preset)), ROOT)
    check_paths(validate_params(yaml.safe_load((ROOT / "params.yaml").read_text())), ROOT, require_inputs=True)


@pytest.mark.parametrize("prepared", ["data", "data/photos", "data/photos/alice", "./data/../data/photos"])
def test_prepared_dir_on_an_input_is_refused(project, prepared):
    msg = _violations(_folders(prepared_dir=prepared), project)
    assert "data.prepared_dir" in msg and ("data.train_folders" in msg or "data/ (the raw-data folder" in msg)
    assert str(project / "data") in msg  # both resolved paths are named


def test_runs_dir_inside_prepared_dir_is_refused(project):
    msg = _violations({"runs_dir": "prepared/runs"}, project)
    assert "data.prepared_dir 'prepared'" in msg and "contains runs_dir 'prepared/runs'" in msg


@pytest.mark.parametrize("key,value,expected", [
    ("runs_dir", "..", "lies outside the project"),
    ("runs_dir", "/", "lies outside the project"),
    ("runs_dir", ".", "is the project root itself"),
    ("runs_dir", "src", "the project's own 'src'"),
    ("runs_dir", "runs/../params.yaml", "the project's own 'params.yaml'"),
    ("quality.output_dir", "analysis", "analysis outputs (dvc.yaml)"),
    ("quality.output_dir", "reports", "contains the report (dvc.yaml)"),
])
def test_outputs_outside_or_over_the_project_are_refused(project, key, value, expected):
    section, _, name = key.rpartition(".")
    raw = {section: {name: value}} if section else {name: value}
    msg = _violations(raw, project)
    assert key in msg and expected in msg, msg


def test_symlinked_output_is_resolved(project, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (project / "link").symlink_to(outside)
    msg = _violations({"runs_dir": "link/runs"}, project)
    assert "lies outside the project" in msg and str(outside / "runs") in msg


@pytest.mark.parametrize("cache", ["/", "..", "data/photos/.cache", "x/../prepared/cache"])
def test_alignment_cache_in_unsafe_places_is_refused(project, cache):
    msg = _violations(_folders(align="detect", alignment={"cache_dir": cache}), project)
    assert "data.alignment.cache_dir" in msg


def test_shared_alignment_cache_outside_needs_marker_or_empty(project, tmp_path):
    shared = tmp_path / "shared_cache"
    raw = _folders(align="detect", alignment={"cache_dir": str(shared)})
    assert "does not exist" in _violations(raw, project)
    shared.mkdir()
    check_paths(validate_params(raw), project)  # empty: fine
    (shared / "someone.txt").write_text("x")
    assert "holds no marginlab cache marker" in _violations(raw, project)
    (shared / ALIGN_CACHE_MARKER).write_text("")
    check_paths(validate_params(raw), project)


def test_two_outputs_may_not_share_a_place(project):
    msg = _violations({"quality": {"output_dir": "runs"}}, project)
    assert "quality.output_dir 'runs'" in msg and "runs_dir 'runs'" in msg


def test_a_released_model_file_is_an_input(project):
    """The released stage only reads its file; an output over it is refused, a missing one is the stage's to report."""
    raw = {"released": {"ir18": {"file": "runs/adaface_ir18.ckpt", "format": "adaface"}}}
    msg = _violations(raw, project)
    assert "runs_dir 'runs'" in msg and "contains the input released.ir18.file 'runs/adaface_ir18.ckpt'" in msg
    check_paths(validate_params({"released": {"ir18": {"file": "checkpoints/missing.ckpt", "format": "adaface"}}}),
                project, require_inputs=True)
    msg = _violations({"runs_dir": "released/runs"}, project)
    assert "released-model outputs (dvc.yaml) 'released'" in msg


def test_configured_inputs_must_exist(project):
    raw = _folders(train_folders="data/missing", val_bins=["data/lfw.bin"], tinyface="data/photos/person0/0.jpg")
    msg = _violations(raw, project, require_inputs=True)
    assert "data.train_folders 'data/missing'" in msg and "does not exist" in msg
    assert "data.val_bins[0] 'data/lfw.bin'" in msg
    assert "data.tinyface" in msg and "is not a folder" in msg
    check_paths(validate_params(raw), project)  # existence is checked only where inputs are read


def test_every_violation_is_listed(project):
    msg = _violations({"runs_dir": "..", "data": {"prepared_dir": "data"}}, project)
    assert msg.count("\n  - ") >= 2


def test_load_params_applies_the_policy(project):
    (project / "params.yaml").write_text(yaml.safe_dump({"runs_dir": ".."}))
    with pytest.raises(ConfigError, match="runs_dir '..'.*outside the project"):
        load_params("params.yaml")


# ------------------------------------------------------------------------ the stages and the validator
def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("prepared", ["data", "data/photos"])
def test_prepare_refuses_to_replace_the_photos(project, prepared):
    before = _tree(project / "data")
    (project / "params.yaml").write_text(yaml.safe_dump({**_folders(prepared_dir=prepared), "quality": {"threads": 1}}))
    for args in (["-m", "marginlab.core.config", "params.yaml"], [str(ROOT / "stages" / "prepare.py"), "--no-progress"]):
        proc = _cli(args, project)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
        assert "data.prepared_dir" in proc.stderr and str(project / "data") in proc.stderr
    assert _tree(project / "data") == before  # every photo still there, byte for byte


# ------------------------------------------------------------------ second line of defence: the marker
def test_atomic_dir_refuses_a_folder_it_did_not_create(tmp_path):
    photos = tmp_path / "photos"
    kept = _photos(photos)
    with pytest.raises(OutputWriteError, match=f"cannot write {photos}: .*not written by marginlab"):
        with atomic_dir(photos) as tmp:
            (tmp / "x").write_text("new")
    assert all(p.exists() for p in kept) and not list(tmp_path.glob(".photos.*"))


def test_atomic_dir_replaces_its_own_output_and_empty_folders(tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # empty: nothing to lose
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    assert (out / OUTPUT_MARKER).is_file() and (out / "a").read_text() == "1"
    with atomic_dir(out) as tmp:  # its own output: replaced as a whole
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "b"]


def test_atomic_dir_refuses_links_and_files(tmp_path):
    target = tmp_path / "target"
    _photos(target)
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "file").write_text("x")
    for path, why in ((tmp_path / "link", "symbolic link"), (tmp_path / "file", "not a folder")):
        with pytest.raises(OutputWriteError, match=why):
            check_replaceable(path)
    assert len(list(target.rglob("*.jpg"))) == 6


def test_run_prepare_refuses_the_photo_folder_even_without_the_validator(project):
    # the library call bypasses load_params: the marker check alone must keep the photos
    from marginlab.data.prepare import run_prepare

    before = _tree(project / "data")
    params = validate_params({**_folders(), "data": {**_folders()["data"], "image_size": 32}})
    with pytest.raises(OutputWriteError, match="not written by marginlab"):
        run_prepare(params, project / "data" / "photos", progress=False)
    assert _tree(project / "data") == before


def test_marker_is_never_written_through_a_planted_link(tmp_path):
    from marginlab.core.ownership import write_marker

    target = tmp_path / "elsewhere.txt"
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / ALIGN_CACHE_MARKER).symlink_to(target)  # dangling: a plain write would create the target
    with pytest.raises(OSError, match="symbolic link"):
        write_marker(folder, ALIGN_CACHE_MARKER)
    assert not target.exists()
