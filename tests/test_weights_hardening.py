"""model.pt and checkpoint.pt are checked before any weight is loaded (issue #21, point 7 "Weights").

``load_state_dict`` casts complex weights to real without a word (a chance-level or all-zero model, exit 0)
and meets a wrong shape or key with a traceback; a model.pt of another run configuration was evaluated
under this run's name. Each finding is damaged into a copy of one tiny trained run (tests/tiny_train.py,
1 epoch: a checkpoint with momentum buffers and a model.pt) and run through the stage entry point
in-process: exit 2, exactly one ``error:`` line naming the file, the key and both shapes/dtypes, no traceback.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny_train import SIZE, make_params

from marginlab.data.formats import encode_jpeg, write_bin
from marginlab.evaluate import evaluate_prepared, run_evaluate
from marginlab.models import build_modules, load_model
from marginlab.train import run_train

REPO = Path(__file__).resolve().parents[1]
RUN = "cos"
SPEC = {"head": "cosface", "head_params": {"s": 16.0, "m": 0.2}}


# --------------------------------------------------------------------------- fixtures and helpers
def _stage(name: str):
    from pipeline_helpers import stage_command

    module = stage_command(name)
    return module


def _eval_set(root: Path) -> Path:
    """A prepared directory with one verification .bin: 10 genuine and 10 impostor pairs of SIZE x SIZE images."""
    rng = np.random.default_rng(0)
    colours = rng.integers(30, 226, (20, 3))

    def image(identity: int) -> bytes:
        return encode_jpeg(np.clip(colours[identity] + rng.normal(0, 10, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8))

    pairs = [(i, i, True) for i in range(10)] + [(i, i + 10, False) for i in range(10)]
    write_bin(root / "verification" / "hq.bin", [image(k) for a, b, _ in pairs for k in (a, b)], [s for *_, s in pairs])
    return root


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    """``(runs_dir, eval_prepared)``: run ``cos`` trained 1 epoch, and a verification set to evaluate it on."""
    root = tmp_path_factory.mktemp("weights")
    cwd = os.getcwd()
    os.chdir(root)  # dvclive looks for a repository from the working directory: keep it out of the project's
    try:
        run_train(make_params(tiny_prepared, root, runs={RUN: SPEC}, train={"epochs": 1}), RUN)
    finally:
        os.chdir(cwd)
    return root / "runs", _eval_set(root / "eval_prepared")


@pytest.fixture
def ws(trained, tiny_prepared, tmp_path, monkeypatch):
    """A private project folder (the working directory): the trained run in ``runs/``, its training set in
    ``prepared/`` and the verification set in ``eval/`` (inside it: the stages' path policy)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the stages set it when unset; keep the env restorable
    shutil.copytree(trained[0], tmp_path / "runs")
    shutil.copytree(tiny_prepared, tmp_path / "prepared")
    shutil.copytree(trained[1], tmp_path / "eval")
    return tmp_path


def _params(ws: Path, prepared: Path, runs: dict | None = None, **train):
    return make_params(prepared, ws, runs=runs or {RUN: SPEC}, train={"epochs": 1, **train})


def _run_stage(name: str, params, capsys, run: str = RUN) -> tuple[int, str]:
    path = Path(params.runs_dir).parent / f"params_{name}.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    extra = ["--device", "cpu", "--no-progress"] if name == "evaluate" else []
    capsys.readouterr()
    rc = _stage(name).main([run, "--params", str(path), *extra])
    return rc, capsys.readouterr().err


def _assert_refused(rc: int, err: str, *needles: str) -> str:
    """Exit 2, exactly one ``error:`` line holding every needle, no traceback; the line."""
    assert rc == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def _edit(path: Path, change) -> str:
    """Apply ``change`` to the loaded file and write it back; its sha256 afterwards."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _conv_key(state: dict) -> str:
    return next(k for k, v in state.items() if v.dim() == 4)


def _shape(shape) -> str:
    return str(tuple(shape))


def _evaluate_refused(ws, capsys, *needles, params=None, run: str = RUN) -> str:
    rc, err = _run_stage("evaluate", params or _params(ws, ws / "eval"), capsys, run)
    line = _assert_refused(rc, err, f"runs/{run}/model.pt", *needles)
    assert not (ws / "runs" / run / "metrics.json").exists()
    return line


def _resume_refused(ws, capsys, digest: str, *needles: str) -> str:
    rc, err = _run_stage("train", _params(ws, ws / "prepared"), capsys)
    line = _assert_refused(rc, err, f"runs/{RUN}/checkpoint.pt", "not resumed", *needles)
    ckpt = ws / "runs" / RUN / "checkpoint.pt"
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == digest  # left as it was
    return line


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("damage", ["complex", "float_counter"])
def test_model_file_with_complex_or_wrongly_typed_weights_is_refused(ws, capsys, damage):
    """Complex weights used to be cast to real silently (exit 0); a float step counter is no counter."""
    found = {}

    def change(payload):
        state = payload["backbone"]
        if damage == "complex":
            found["key"] = _conv_key(state)
            state[found["key"]] = state[found["key"]].to(torch.complex64)
        else:
            found["key"] = next(k for k in state if k.endswith("num_batches_tracked"))
            state[found["key"]] = state[found["key"]].float()

    _edit(ws / "runs" / RUN / "model.pt", change)
    got, want = ("complex64", "float32") if damage == "complex" else ("float32", "int64")
    _evaluate_refused(ws, capsys, f"backbone.{found['key']} has dtype {got}, the architecture expects {want}")


@pytest.mark.parametrize("part", ["backbone", "optimizer"])
def test_checkpoint_with_complex_tensors_is_refused(ws, capsys, part):
    """Complex weights or momentum buffers used to be cast to real on resume (exit 0)."""
    found = {}

    def change(state):
        if part == "backbone":
            found["key"] = _conv_key(state["backbone"])
            state["backbone"][found["key"]] = state["backbone"][found["key"]].to(torch.complex128)
        else:
            entry = next(iter(state["optimizer"]["state"].values()))
            entry["momentum_buffer"] = entry["momentum_buffer"].to(torch.complex64)

    digest = _edit(ws / "runs" / RUN / "checkpoint.pt", change)
    line = _resume_refused(ws, capsys, digest, "complex")
    if part == "backbone":
        assert f"backbone.{found['key']} has dtype complex128, the architecture expects float32" in line
    else:
        assert re.search(r"optimizer momentum_buffer of (backbone|head)\.\S+ has dtype complex64", line), line


# --------------------------------------------------------------------------- shapes
def test_model_file_with_a_wrong_shape_names_both_shapes(ws, capsys):
    found = {}

    def change(payload):
        key = found["key"] = _conv_key(payload["backbone"])
        found["want"] = payload["backbone"][key].shape
        payload["backbone"][key] = torch.zeros(2 * found["want"][0], *found["want"][1:])

    _edit(ws / "runs" / RUN / "model.pt", change)
    bad = (2 * found["want"][0], *found["want"][1:])
    expected = f"has shape {_shape(bad)}, the architecture expects {_shape(found['want'])}"
    _evaluate_refused(ws, capsys, f"backbone.{found['key']} {expected}")


@pytest.mark.parametrize("part", ["head", "optimizer"])
def test_checkpoint_with_a_wrong_shape_names_both_shapes(ws, capsys, part):
    found = {}

    def change(state):
        if part == "head":
            found["want"] = state["head"]["weight"].shape
            state["head"]["weight"] = torch.zeros(found["want"][0] + 1, found["want"][1])
        else:
            entry = next(iter(state["optimizer"]["state"].values()))
            found["want"] = entry["momentum_buffer"].shape
            entry["momentum_buffer"] = torch.zeros(found["want"][0] + 1, *found["want"][1:])

    digest = _edit(ws / "runs" / RUN / "checkpoint.pt", change)
    bad = (found["want"][0] + 1, *found["want"][1:])
    shapes = f"has shape {_shape(bad)}, the architecture expects {_shape(found['want'])}"
    line = _resume_refused(ws, capsys, digest, shapes)
    assert ("head.weight " + shapes if part == "head" else "optimizer momentum_buffer of ") in line


# --------------------------------------------------------------------------- keys
@pytest.mark.parametrize("name", ["model.pt", "checkpoint.pt"])
def test_missing_and_unexpected_keys_are_named(ws, capsys, name):
    found = {}

    def change(payload):
        state = payload["backbone"]
        found["key"] = _conv_key(state)
        state["extra.weight"] = state.pop(found["key"])

    digest = _edit(ws / "runs" / RUN / name, change)
    needles = (f"backbone.{found['key']} is missing", "backbone.extra.weight is not part of the architecture")
    if name == "model.pt":
        _evaluate_refused(ws, capsys, *needles)
    else:
        _resume_refused(ws, capsys, digest, *needles)


def test_checkpoint_state_that_cannot_be_restored_is_refused(ws, capsys):
    """Beyond the weights: an RNG state torch cannot take ended in a traceback."""

    def change(state):
        state["rng"]["torch"] = state["rng"]["torch"].float()

    digest = _edit(ws / "runs" / RUN / "checkpoint.pt", change)
    rc, err = _run_stage("train", _params(ws, ws / "prepared"), capsys)
    _assert_refused(rc, err, f"runs/{RUN}/checkpoint.pt", "its rng state cannot be restored", "start over")
    assert hashlib.sha256((ws / "runs" / RUN / "checkpoint.pt").read_bytes()).hexdigest() == digest


# --------------------------------------------------------------------------- run configuration
def test_model_file_of_another_configuration_is_refused(ws, capsys):
    """Changed params, or a model.pt copied in from another run: each difference named with both values."""
    changed = _params(ws, ws / "eval", runs={RUN: {"head": "cosface", "head_params": {"s": 16.0, "m": 0.3}}}, lr=0.05)
    line = _evaluate_refused(ws, capsys, "head_params.m = 0.2, params say 0.3",
                             "train.lr = 0.1, params say 0.05", f"params give run '{RUN}'", f"dvc repro train@{RUN}",
                             params=changed)
    assert "num_workers" not in line and "label" not in line

    other = "cos-s1"
    foreign = _params(ws, ws / "eval", runs={RUN: SPEC, other: {**SPEC, "seed": 1}})
    (ws / "runs" / other).mkdir()
    shutil.copy2(ws / "runs" / RUN / "model.pt", ws / "runs" / other / "model.pt")
    _evaluate_refused(ws, capsys, "seed = 0, params say 1", params=foreign, run=other)


def test_matching_model_file_loads_and_evaluates_identically(ws):
    """The checks refuse nothing legitimate: settings that do not change what was learned may differ
    (execution, probe, label, tags), weights may be stored in another real dtype (float64) and counters in
    another integer dtype; the loaded model is the file's and evaluates as the unchecked load did."""
    run_dir = ws / "runs" / RUN
    payload = torch.load(run_dir / "model.pt", weights_only=True)
    backbone_ref, _ = build_modules(make_params(ws / "eval", ws, runs={RUN: SPEC}).run(RUN), payload["num_classes"])
    backbone_ref.load_state_dict(payload["backbone"])  # today's load, no checks

    def change(p):
        p["backbone"] = {k: v.double() if v.is_floating_point() else v.int() for k, v in p["backbone"].items()}

    _edit(run_dir / "model.pt", change)
    spec = {**SPEC, "label": "renamed", "tags": ["main"]}
    params = _params(ws, ws / "eval", runs={RUN: spec}, num_workers=1, threads=2, device="auto", amp="off",
                     channels_last=False, compile="off", probe_size=8, probe_progress=[],
                     distributed={"nproc_per_node": 2})
    backbone, _, resolved = load_model(run_dir, expected=params.run(RUN))
    assert resolved.head_params == {"s": 16.0, "m": 0.2}
    for key, value in backbone_ref.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key
    metrics = run_evaluate(params, RUN, device="cpu", progress=False)
    backbone_ref.eval()
    reference = evaluate_prepared(backbone_ref, ws / "eval", cfg=params.evaluate, input_size=SIZE, device="cpu",
                                  progress=False)
    assert metrics["verification"] == reference.verification
    assert (run_dir / "metrics.json").exists()
