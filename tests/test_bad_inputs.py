"""Bad-input suite: the stage CLIs on damaged copies of the shared pipeline workspace.

The workspace is the whole pipeline run once by ``dvc repro`` on small params (tests/conftest.py); every
test copies it, damages one thing (a truncated or garbled ``.rec``, a wrong
``.idx`` offset, a corrupt JPEG, a hostile pickle or torch file, a hostile run name, a read-only or full
output folder, mixed image sizes, a wrong BRISQUE model) and runs one stage. A failure must end with
exit status 2, one ``error:`` line naming the file or key, no traceback, and no partial output; the
real-world inputs that must work (mixed sizes, ``cv2.imencode`` arrays in a ``.bin``) must work.

Read-only and full folders are real file systems: a tmpfs mounted read-only, or one of a few hundred
KiB (this needs root, which CI and the development machines have); without root a read-only folder
falls back to ``chmod``, and the full-disk case cannot be made, so it is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from hostile import RunsTouch as _Hostile
from pipeline_helpers import ROOT, small_params

pytestmark = pytest.mark.slow

RUN = "adaface-s0"


# ----------------------------------------------------------------------------------------- helpers
def write_params(ws: Path, raw: dict) -> None:
    (ws / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def stage(ws: Path, name: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m marginlab <name>`` in workspace ``ws`` (its params.yaml) without progress bars."""
    cmd = [sys.executable, "-m", "marginlab", name, *args]
    if name in ("prepare", "quality", "evaluate", "analyze"):
        cmd.append("--no-progress")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ws, capture_output=True, text=True, timeout=timeout, env=env)


def assert_clean_failure(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, an ``error:`` line naming every needle, and no Python traceback."""
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{err[-4000:]}"
    assert "Traceback" not in err, err[-4000:]
    line = next((ln for ln in err.splitlines() if ln.startswith("error: ")), "")
    assert line, err[-2000:]
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err[-3000:]}"
    return err


def temp_leftovers(root: Path) -> list[Path]:
    """Temporary files/folders of the atomic writers (``.<name>.*.tmp*``) anywhere under ``root``."""
    return [p for p in root.rglob(".*") if ".tmp" in p.name]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mount_tmpfs(path: Path, size: str, readonly: bool = False) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    opts = f"size={size}" + (",ro" if readonly else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0


@contextlib.contextmanager
def readonly_dir(path: Path):
    """``path`` as a read-only folder (a read-only tmpfs as root; chmod 0555 otherwise). Its contents are kept."""
    saved = None
    if path.exists() and any(path.iterdir()):
        saved = path.with_name(path.name + ".saved")
        shutil.copytree(path, saved)
        shutil.rmtree(path)
    if os.geteuid() == 0:
        if not _mount_tmpfs(path, "64m"):
            pytest.skip("cannot mount a tmpfs here (root without CAP_SYS_ADMIN)")
        if saved is not None:
            shutil.copytree(saved, path, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
            if saved is not None:
                shutil.copytree(saved, path, dirs_exist_ok=True)
                shutil.rmtree(saved)
    else:
        path.mkdir(parents=True, exist_ok=True)
        if saved is not None:
            shutil.copytree(saved, path, dirs_exist_ok=True)
        for p in [path, *path.rglob("*")]:
            if p.is_dir():
                p.chmod(0o555)
        try:
            yield path
        finally:
            for p in [path, *path.rglob("*")]:
                if p.is_dir():
                    p.chmod(0o755)
            if saved is not None:
                shutil.rmtree(saved)


@contextlib.contextmanager
def full_dir(path: Path, size: str = "384k"):
    """``path`` as a tiny tmpfs that fills up on the first real write (root only)."""
    if not _mount_tmpfs(path, size):
        pytest.skip("a full file system needs a tmpfs mount (root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ----------------------------------------------------------------------------------------- workspace
@pytest.fixture(scope="session")
def workspace(pipeline_workspace) -> Path:
    """The shared small workspace (tests/conftest.py): prepared/, models/, quality/, runs/<RUN>/ trained and
    evaluated by ``dvc repro`` on :func:`pipeline_helpers.workspace_params`."""
    assert (pipeline_workspace / "runs" / RUN / "metrics.json").is_file()
    return pipeline_workspace


@pytest.fixture
def ws(workspace, tmp_path) -> Path:
    """A private copy of the workspace for one test to damage."""
    dest = tmp_path / "ws"
    shutil.copytree(workspace, dest, symlinks=True)
    return dest


def raw_recordio(ws: Path) -> tuple[Path, Path]:
    """A user's raw RecordIO under data/raw/ (a copy of the prepared synthetic training set)."""
    raw = ws / "data" / "raw"
    raw.mkdir(parents=True)
    rec, idx = raw / "train.rec", raw / "train.idx"
    shutil.copy2(ws / "prepared" / "train.rec", rec)
    shutil.copy2(ws / "prepared" / "train.idx", idx)
    return rec, idx


def use_recordio(ws: Path, rec: Path, **data) -> None:
    raw = small_params()
    raw["data"].update(source="recordio", train_rec=str(rec.relative_to(ws)), **data)
    write_params(ws, raw)


def use_folders(ws: Path, **train) -> None:
    raw = small_params()
    raw["data"].update(source="folders", train_folders="data/faces")
    raw["train"].update(train)
    write_params(ws, raw)


def prepared_unchanged(ws: Path, before: dict[str, str]) -> None:
    now = {p.relative_to(ws).as_posix(): sha(p) for p in (ws / "prepared").rglob("*") if p.is_file()}
    assert now == before, "prepared/ changed although prepare failed"
    assert not temp_leftovers(ws), temp_leftovers(ws)


def snapshot(ws: Path, folder: str = "prepared") -> dict[str, str]:
    return {p.relative_to(ws).as_posix(): sha(p) for p in (ws / folder).rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------------------- security
def test_hostile_checkpoint_is_refused_and_never_runs(ws):
    marker = ws / "PWNED"
    ckpt = ws / "runs" / RUN / "checkpoint.pt"
    torch.save({"format": "marginlab-checkpoint", "version": 2, "epoch": 1, "x": _Hostile(marker)}, ckpt)
    before = sha(ckpt)
    err = assert_clean_failure(stage(ws, "train", RUN), f"runs/{RUN}/checkpoint.pt", "refused")
    assert not marker.exists() and sha(ckpt) == before, err


def test_hostile_model_file_is_refused_and_never_runs(ws):
    marker = ws / "PWNED"
    torch.save({"format": "marginlab-model", "version": 1, "x": _Hostile(marker)}, ws / "runs" / RUN / "model.pt")
    metrics = sha(ws / "runs" / RUN / "metrics.json")
    assert_clean_failure(stage(ws, "evaluate", RUN), f"runs/{RUN}/model.pt")
    assert not marker.exists() and sha(ws / "runs" / RUN / "metrics.json") == metrics


def test_hostile_verification_bin_is_refused_and_never_runs(ws):
    marker = ws / "PWNED"
    bad = ws / "data" / "evil.bin"
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(pickle.dumps(([b"x", b"y"], [True, _Hostile(marker)])))
    raw = small_params()
    raw["data"]["val_bins"] = ["data/evil.bin"]
    write_params(ws, raw)
    before = snapshot(ws)
    assert_clean_failure(stage(ws, "prepare"), "data/evil.bin", "not allowed")
    assert not marker.exists()
    prepared_unchanged(ws, before)


def test_hostile_brisque_model_is_refused_and_never_runs(ws):
    marker = ws / "PWNED"
    model = ws / "models" / "brisque_live.pth"
    torch.save((_Hostile(marker), torch.zeros(3)), model)
    before = snapshot(ws, "quality")
    assert_clean_failure(stage(ws, "quality"), "models/brisque_live.pth")
    assert not marker.exists() and snapshot(ws, "quality") == before


# Every character class is checked in-process by tests/test_config.py; here one shell separator and one
# option-like name go through the real entry points.
@pytest.mark.parametrize("name", ["x;touch PWNED", "--no-resume"])
def test_hostile_run_names_stop_every_entry_point(tmp_path, name):
    """The schema refuses the name before anything runs: the stage CLIs and the params check exit 2."""
    raw = small_params()
    raw["runs"] = {name: {"head": "adaface"}}
    write_params(tmp_path, raw)
    for proc in (stage(tmp_path, "train", "--", name), stage(tmp_path, "prepare"),
                 subprocess.run([sys.executable, "-m", "marginlab.core.config", "params.yaml"], cwd=tmp_path,
                                capture_output=True, text=True)):
        assert_clean_failure(proc, "- runs", "is not allowed")
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "prepared").exists()


def test_make_repro_validates_params_before_dvc_runs(tmp_path):
    """`make repro` stops at the params check: DVC never starts (it would delete outputs first, and a run
    name reaches its shell), so no stage runs and no PWNED file appears."""
    ws = tmp_path / "repo"
    ws.mkdir()
    shutil.copy2(ROOT / "Makefile", ws / "Makefile")
    (ws / "pyproject.toml").write_text("")
    raw = small_params()
    raw["runs"] = {"x;touch PWNED": {"head": "adaface"}}
    write_params(ws, raw)
    (ws / "prepared").mkdir()
    (ws / "prepared" / "keep.txt").write_text("user results")
    venv = Path(sys.executable).parents[1]
    stamp = ws / "stamp"
    stamp.write_text("")
    proc = subprocess.run(["make", "repro", f"VENV={venv}", f"STAMP={stamp}"], cwd=ws, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120)
    assert proc.returncode != 0
    assert "is not allowed" in proc.stderr and "dvc" not in proc.stdout.split("marginlab.core.config")[-1]
    assert not (ws / "PWNED").exists() and (ws / "prepared" / "keep.txt").read_text() == "user results"


def test_dvc_command_keeps_a_run_name_one_shell_word():
    """Second guard: dvc.yaml quotes the key, so even a name past the schema stays one argument."""
    import shlex

    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage_name in ("train", "evaluate"):
        cmd = spec[stage_name]["do"]["cmd"].replace("${key}", "x;touch PWNED")
        assert shlex.split(cmd)[-1] == "x;touch PWNED", cmd


# ----------------------------------------------------------------------------------------- damaged training data
def test_truncated_rec_names_data_train_rec(ws):
    rec, _ = raw_recordio(ws)
    rec.write_bytes(rec.read_bytes()[: rec.stat().st_size // 2])
    use_recordio(ws, rec)
    before = snapshot(ws)
    assert_clean_failure(stage(ws, "prepare"), "data/raw/train.rec")
    prepared_unchanged(ws, before)


def test_garbled_rec_names_data_train_rec(ws):
    rec, _ = raw_recordio(ws)
    data = bytearray(rec.read_bytes())
    rng = np.random.default_rng(0)
    start = len(data) // 2
    data[start : start + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    rec.write_bytes(bytes(data))
    use_recordio(ws, rec)
    before = snapshot(ws)
    assert_clean_failure(stage(ws, "prepare"), "data/raw/train.rec")
    prepared_unchanged(ws, before)


def test_wrong_idx_offset_names_the_users_file(ws):
    rec, idx = raw_recordio(ws)
    lines = idx.read_text().splitlines()
    key, offset = lines[5].split("\t")
    lines[5] = f"{key}\t{int(offset) + 3}"
    idx.write_text("\n".join(lines) + "\n")
    use_recordio(ws, rec)
    before = snapshot(ws)
    err = assert_clean_failure(stage(ws, "prepare"), "data/raw/train.rec")
    assert ".tmp" not in err.splitlines()[-1], err
    prepared_unchanged(ws, before)


def test_corrupt_jpeg_deep_in_rec_is_found_at_prepare(ws):
    """A corrupt image past the first records is found at prepare (not in the quality stage), naming the source."""
    from marginlab.data.formats import open_recordio, write_recordio

    rec, _ = raw_recordio(ws)
    reader = open_recordio(rec)
    samples = [reader[i] for i in range(len(reader))]
    reader.close()
    bad = len(samples) - 3
    samples[bad] = (samples[bad][0][: len(samples[bad][0]) // 2], samples[bad][1])
    write_recordio(rec, samples, with_header=True)
    use_recordio(ws, rec)
    before = snapshot(ws)
    assert_clean_failure(stage(ws, "prepare"), "data/raw/train.rec", "truncated JPEG")
    prepared_unchanged(ws, before)


def test_users_read_only_rec_is_never_modified(ws):
    rec, idx = raw_recordio(ws)
    for p in (rec, idx):
        p.chmod(0o444)
    before = {p: (sha(p), p.stat().st_mode, p.stat().st_mtime_ns) for p in (rec, idx)}
    use_recordio(ws, rec)
    proc = stage(ws, "prepare")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for p, (digest, mode, mtime) in before.items():
        assert (sha(p), stat.S_IMODE(p.stat().st_mode), p.stat().st_mtime_ns) == (digest, 0o444, mtime), p


def _folder_set(root: Path, sizes: list[tuple[int, int]], corrupt: str | None = None) -> None:
    rng = np.random.default_rng(1)
    for c in range(4):
        d = root / f"id{c:02d}"
        d.mkdir(parents=True)
        for k, (h, w) in enumerate(sizes):
            img = np.clip(rng.normal(40 + 50 * c, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            ok, buf = cv2.imencode(".jpg", img)
            assert ok
            (d / f"{k}.jpg").write_bytes(buf.tobytes())
    if corrupt is not None:
        path = root / corrupt
        path.write_bytes(path.read_bytes()[:200])


def test_identity_folders_of_mixed_sizes_prepare_and_train(ws):
    """Real folders mix 250x250, 112x112, non-square and grayscale-sized crops: prepare brings them to one size."""
    root = ws / "data" / "faces"
    _folder_set(root, [(112, 112), (250, 250), (120, 120), (180, 140), (96, 128), (112, 112)])
    use_folders(ws, batch_size=8, probe_size=8)
    proc = stage(ws, "prepare")
    assert proc.returncode == 0, proc.stderr[-3000:]
    from marginlab.data.formats import decode_image, open_recordio

    reader = open_recordio(ws / "prepared" / "train.rec")
    shapes = {decode_image(reader[i][0]).shape for i in range(len(reader))}
    reader.close()
    assert shapes == {(112, 112, 3)}
    shutil.rmtree(ws / "runs" / RUN)
    stale = stage(ws, "train", RUN)  # the quality scores still describe the synthetic set
    assert_clean_failure(stale, "quality/scores.parquet", "rerun the quality stage")
    assert stage(ws, "quality").returncode == 0
    proc = stage(ws, "train", RUN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (ws / "runs" / RUN / "model.pt").exists()


def test_corrupt_jpeg_in_identity_folder_names_the_file(ws):
    root = ws / "data" / "faces"
    _folder_set(root, [(112, 112)] * 3, corrupt="id02/1.jpg")
    use_folders(ws)
    before = snapshot(ws)
    assert_clean_failure(stage(ws, "prepare"), "data/faces/id02/1.jpg")
    prepared_unchanged(ws, before)


# ----------------------------------------------------------------------------------------- verification .bin
def _bin_from_cv2(path: Path, n_pairs: int, shape=(112, 112)) -> None:
    """A .bin as other toolkits write it: a pickle of cv2.imencode arrays (shape (N, 1)) and a bool list."""
    rng = np.random.default_rng(2)
    bins = []
    for _ in range(2 * n_pairs):
        ok, buf = cv2.imencode(".jpg", rng.integers(0, 255, (*shape, 3), dtype=np.uint8))
        assert ok
        bins.append(buf.reshape(-1, 1))  # OpenCV 4's (N, 1) array, what the .bin files in the wild hold
    with open(path, "wb") as fh:
        pickle.dump((bins, [bool(i % 2) for i in range(n_pairs)]), fh, protocol=2)


def test_bin_of_cv2_arrays_is_read_and_evaluated(ws):
    (ws / "data").mkdir(exist_ok=True)
    _bin_from_cv2(ws / "data" / "wild.bin", 10, shape=(120, 120))
    raw = small_params()
    raw["data"]["val_bins"] = ["data/wild.bin"]
    write_params(ws, raw)
    proc = stage(ws, "prepare")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (ws / "prepared" / "verification" / "wild.bin").exists()
    proc = stage(ws, "evaluate", RUN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    metrics = json.loads((ws / "runs" / RUN / "metrics.json").read_text())
    assert "wild" in json.dumps(metrics)


def test_bin_with_zero_pairs_is_rejected_at_prepare(ws):
    (ws / "data").mkdir(exist_ok=True)
    with open(ws / "data" / "empty.bin", "wb") as fh:
        pickle.dump(([], []), fh)
    raw = small_params()
    raw["data"]["val_bins"] = ["data/empty.bin"]
    write_params(ws, raw)
    before = snapshot(ws)
    assert_clean_failure(stage(ws, "prepare"), "data/empty.bin", "0 pairs")
    prepared_unchanged(ws, before)


# ----------------------------------------------------------------------------------------- models
def test_brisque_model_with_wrong_values_is_refused(ws):
    model = ws / "models" / "brisque_live.pth"
    sv_coef, sv = torch.load(model, weights_only=True)
    torch.save((torch.zeros_like(sv_coef), sv), model)
    before = snapshot(ws, "quality")
    assert_clean_failure(stage(ws, "quality"), "models/brisque_live.pth", "quality.model_sha256")
    assert snapshot(ws, "quality") == before


def test_diverging_run_says_no_checkpoint_exists(ws):
    raw = small_params()
    raw["train"]["lr"] = 1e6
    write_params(ws, raw)
    shutil.rmtree(ws / "runs" / RUN)
    err = assert_clean_failure(stage(ws, "train", RUN), "No checkpoint exists yet")
    assert "is kept" not in err and not (ws / "runs" / RUN / "model.pt").exists()


# ----------------------------------------------------------------------------------------- read-only and full folders
def test_read_only_runs_folder(ws):
    with readonly_dir(ws / "runs"):
        err = assert_clean_failure(stage(ws, "train", RUN, "--no-resume"), "cannot write", "runs/")
    assert "read-only file system" in err or "permission denied" in err
    assert not temp_leftovers(ws / "runs")


def test_read_only_quality_folder(ws):
    before = snapshot(ws, "quality")
    with readonly_dir(ws / "quality"):
        err = assert_clean_failure(stage(ws, "quality"), "cannot write", "quality")
    assert "read-only file system" in err or "permission denied" in err
    assert snapshot(ws, "quality") == before


def test_read_only_reports_folder(ws):
    (ws / "reports" / "report.html").unlink()  # the workspace's own report (dvc repro): none must be written
    with readonly_dir(ws / "reports"):
        err = assert_clean_failure(stage(ws, "report"), "cannot write", "reports/report.html")
    assert "read-only file system" in err or "permission denied" in err
    assert not (ws / "reports" / "report.html").exists()


def test_full_disk_during_training(ws):
    shutil.rmtree(ws / "runs")
    with full_dir(ws / "runs"):
        err = assert_clean_failure(stage(ws, "train", RUN), "cannot write", f"runs/{RUN}/", "no space left on device")
        assert "enforce fail" not in err
        assert not temp_leftovers(ws / "runs")
        assert not (ws / "runs" / RUN / "model.pt").exists()


def test_full_disk_during_prepare(ws):
    before = snapshot(ws)
    shutil.move(ws / "prepared", ws / "prepared.saved")
    with full_dir(ws / "out"):
        raw = small_params()
        raw["data"]["prepared_dir"] = "out/prepared"
        write_params(ws, raw)
        assert_clean_failure(stage(ws, "prepare"), "cannot write", "out/prepared", "no space left on device")
        assert not (ws / "out" / "prepared").exists() and not temp_leftovers(ws / "out")
    shutil.move(ws / "prepared.saved", ws / "prepared")
    assert snapshot(ws) == before
