"""Training core: a tiny run end to end, resume equivalence, NaN stop, probe, proxies, model.pt, logging.

Everything runs on a tiny RecordIO written here (8 identities × 12 colour-coded 32×32 faces) with a
1/8-width IR-18 at 32×32 input on the CPU.
"""

import hashlib
import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from hostile import RunsTouch
from tiny_train import N_CLASSES, N_IMAGES, PER_CLASS, SIZE, make_params

from marginlab.core.config import ConfigError
from marginlab.models import ModelFileError
from marginlab.train import (
    TrainHooks,
    TrainingDivergedError,
    load_model,
    model_info,
    run_train,
)
from marginlab.train.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from marginlab.train.live import EpochLogger, PlainLive, logged_steps, truncate_history
from marginlab.train.probe import PROBE_COLUMNS, plain_target_stats, select_probe
from marginlab.train.runtime import derive_seed, resolve_amp
from marginlab.train.selection import centre_accuracy


@pytest.fixture(scope="module")
def prepared(tiny_prepared):
    return tiny_prepared


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # dvclive looks for a DVC/git repo from the working directory: keep it out of the project's.
    monkeypatch.chdir(tmp_path)


def _history(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["history"]


# --------------------------------------------------------------------------- end to end
def test_run_trains_writes_outputs_and_loss_decreases(prepared, tmp_path):
    params = make_params(prepared, tmp_path, train={"epochs": 4})
    summary = run_train(params, "cos")
    run = tmp_path / "runs" / "cos"
    for name in ("checkpoint.pt", "model.pt", "train_summary.json", "live/metrics.json"):
        assert (run / name).exists(), name
    assert sorted(p.name for p in (run / "probe").glob("*.parquet")) == [f"epoch_{e:02d}.parquet" for e in range(5)]
    hist = _history(run)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert hist[-1]["train/loss"] < 0.6 * hist[0]["train/loss"]
    assert hist[-1]["train/acc"] > hist[0]["train/acc"]
    # lr: 6 steps/epoch, milestone round(0.67 * 24) = 16 -> epochs 1-2 at 0.1, epochs 3-4 end at 0.01
    assert [h["train/lr"] for h in hist] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    saved = json.loads((run / "train_summary.json").read_text())
    assert saved["epochs"] == 4 and saved["selected_epoch"] == 4 and saved["steps_per_epoch"] == 6
    assert saved["final_loss"] == pytest.approx(hist[-1]["train/loss"])
    assert saved["device"] == "cpu" and saved["amp"] == "off" and saved["threads"] == 1
    assert saved["peak_rss_mb"] > 10 and saved["images_per_s"] > 0
    assert summary["final_acc"] == saved["final_acc"]
    loss_tsv = pd.read_csv(run / "live/plots/metrics/train/loss.tsv", sep="\t")
    assert loss_tsv["step"].tolist() == [1, 2, 3, 4]
    assert loss_tsv["loss"].to_numpy() == pytest.approx([h["train/loss"] for h in hist])


def test_probe_parquet_schema_and_content(prepared, tmp_path):
    params = make_params(prepared, tmp_path, train={"epochs": 1},
                         runs={"ada": {"head": "adaface", "head_params": {"s": 16.0}}})
    run_train(params, "ada")
    frames = [pd.read_parquet(tmp_path / "runs/ada/probe" / f"epoch_{e:02d}.parquet") for e in (0, 1)]
    for e, f in enumerate(frames):
        assert tuple(f.columns) == PROBE_COLUMNS
        assert len(f) == 2 * 24 and set(f["pass"]) == {"clean", "augmented"}
        assert (f["epoch"] == e).all()
        for col in ("norm", "p_yi", "cos_y", "iq", "gt_quality"):
            assert f[col].dtype == np.float32, col
        clean, aug = f[f["pass"] == "clean"], f[f["pass"] == "augmented"]
        assert not clean[["crop", "lowres", "photometric", "flip"]].to_numpy().any()
        assert clean["index"].tolist() == aug["index"].tolist()
        assert (clean["label"].to_numpy() == clean["index"].to_numpy() // PER_CLASS).all()
        gt = np.random.default_rng(1).permutation(N_IMAGES) / (N_IMAGES - 1)
        np.testing.assert_allclose(clean["gt_quality"], gt[clean["index"]], rtol=1e-6)
        assert clean["iq"].isna().all()  # no quality stage output in this test
        assert ((f["p_yi"] > 0) & (f["p_yi"] < 1)).all() and (f["cos_y"].abs() <= 1).all()
    # the augmented pass is drawn once: same flags in every epoch; the weights changed between epochs
    a0, a1 = (f[f["pass"] == "augmented"] for f in frames)
    assert (a0[["crop", "lowres", "photometric", "flip"]].to_numpy() == a1[["crop", "lowres", "photometric", "flip"]].to_numpy()).all()
    assert a0[["crop", "lowres", "photometric", "flip"]].to_numpy().any()
    assert not np.allclose(frames[0]["norm"], frames[1]["norm"])
    # stratified by gt_quality: 24 from 96 in 8 equal-count bins -> 3 per bin of 12
    q = np.sort(gt.astype(np.float32))
    bins = np.searchsorted(q[::12][1:], frames[0].loc[frames[0]["pass"] == "clean", "gt_quality"], side="right")
    assert np.bincount(bins, minlength=8).tolist() == [3] * 8


def test_probe_p_yi_is_plain_softmax_of_scaled_cosines():
    from marginlab.heads import build_head

    z = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    head = build_head("arcface", 2, 2, s=2.0)  # the probe uses the head's own scale and centres, no margin
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    st = plain_target_stats(z, head, torch.tensor([1, 0]))
    # row 0: cos = (0.6, 0.8), target 1 -> e^1.6 / (e^1.2 + e^1.6); row 1: cos = (1, 0), target 0
    assert st["norm"].tolist() == pytest.approx([5.0, 1.0])
    assert st["cos_y"].tolist() == pytest.approx([0.8, 1.0])
    p0 = np.exp(1.6) / (np.exp(1.2) + np.exp(1.6))
    p1 = np.exp(2.0) / (np.exp(2.0) + 1.0)
    assert st["p_yi"].tolist() == pytest.approx([p0, p1], rel=1e-6)


# --------------------------------------------------------------------------- resume / divergence
def _weights(run_dir):
    state = torch.load(run_dir / "model.pt", weights_only=True)
    return state["backbone"], state["head"]


@pytest.mark.parametrize("workers", [0, 1])
def test_killed_run_resumes_to_identical_result(prepared, tmp_path, workers):
    spec = {"head": "adaface", "head_params": {"s": 16.0}}
    params = make_params(prepared, tmp_path, runs={"full": spec, "killed": spec}, train={"num_workers": workers})
    ref = run_train(params, "full")

    def kill(epoch, step, state):
        if epoch == 2 and step == 3:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        run_train(params, "killed", hooks=TrainHooks(on_step=kill))
    killed = tmp_path / "runs" / "killed"
    assert load_checkpoint(killed / "checkpoint.pt")["epoch"] == 1
    assert not (killed / "model.pt").exists()
    # a tool may delete non-persistent outputs before re-running: they are rebuilt from the checkpoint
    (killed / "probe" / "epoch_01.parquet").unlink()
    resumed = run_train(params, "killed")
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs"] == 3

    full_b, full_h = _weights(tmp_path / "runs" / "full")
    kill_b, kill_h = _weights(killed)
    for k in full_b:
        assert torch.equal(full_b[k], kill_b[k]), k
    for k in full_h:
        assert torch.equal(full_h[k], kill_h[k]), k
    timing = ("train/images_per_s", "train/seconds")
    for a, b in zip(_history(tmp_path / "runs/full"), _history(killed)):
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    for key in ("final_loss", "final_acc", "final_norm_mean", "head_state", "global_steps"):
        assert ref[key] == resumed[key], key
    for e in range(4):
        pa = pd.read_parquet(tmp_path / f"runs/full/probe/epoch_{e:02d}.parquet")
        pb = pd.read_parquet(killed / f"probe/epoch_{e:02d}.parquet")
        pd.testing.assert_frame_equal(pa, pb)
    tsv = pd.read_csv(killed / "live/plots/metrics/train/loss.tsv", sep="\t")
    assert tsv["step"].tolist() == [1, 2, 3]  # no duplicate row for the interrupted epoch


def test_finished_run_is_not_retrained_and_changed_config_starts_over(prepared, tmp_path, caplog):
    params = make_params(prepared, tmp_path, train={"epochs": 1})
    first = run_train(params, "cos")
    again = run_train(params, "cos")
    assert again["resumed_from_epoch"] == 1 and again["final_loss"] == first["final_loss"]
    changed = make_params(prepared, tmp_path, train={"epochs": 1, "lr": 0.05})
    with caplog.at_level("WARNING"):
        third = run_train(changed, "cos")
    assert third["resumed_from_epoch"] is None
    assert "another configuration" in caplog.text and "resolved_run" in caplog.text


def test_nan_stops_run_and_keeps_last_good_checkpoint(prepared, tmp_path):
    params = make_params(prepared, tmp_path)
    saved = {}

    def remember(epoch, state):
        saved[epoch] = hashlib.sha256((tmp_path / "runs/cos/checkpoint.pt").read_bytes()).hexdigest()

    def poison(epoch, step, state):
        if epoch == 2 and step == 2:
            with torch.no_grad():
                next(state.backbone.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDivergedError, match=r"run 'cos'.*epoch 2, step 2.*last good epoch \(1\) is kept"):
        run_train(params, "cos", hooks=TrainHooks(on_step=poison, on_epoch_end=remember))
    ckpt = tmp_path / "runs/cos/checkpoint.pt"
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == saved[1]
    assert load_checkpoint(ckpt)["epoch"] == 1
    assert not (tmp_path / "runs/cos/model.pt").exists()


def test_huge_learning_rate_is_reported(prepared, tmp_path):
    params = make_params(prepared, tmp_path, train={"lr": 1e30, "epochs": 2})
    with pytest.raises(TrainingDivergedError, match=r"run 'cos'.*epoch 1, step \d+.*No checkpoint exists yet") as exc:
        run_train(params, "cos")
    assert "is kept" not in str(exc.value) and not (tmp_path / "runs/cos/checkpoint.pt").exists()


def test_non_finite_weights_message_says_what_is_on_disk(tmp_path):
    """Weights that turn NaN in epoch 1 (lr 1e6) leave no checkpoint: the message must not claim one is kept."""
    from types import SimpleNamespace

    from marginlab.train.loop import _check_weights_finite

    bad = torch.nn.Linear(2, 2)
    with torch.no_grad():
        bad.weight.fill_(float("nan"))
    ckpt = tmp_path / "checkpoint.pt"
    ctx = SimpleNamespace(name="r", backbone=bad, head=torch.nn.Linear(2, 2), checkpoint_path=ckpt)
    with pytest.raises(TrainingDivergedError, match="No checkpoint exists yet") as exc:
        _check_weights_finite(ctx, 1, 0)
    assert "is kept" not in str(exc.value) and "epoch 0" not in str(exc.value)
    ckpt.write_bytes(b"x")
    with pytest.raises(TrainingDivergedError, match=r"checkpoint .* of the last good epoch \(3\) is kept"):
        _check_weights_finite(ctx, 4, 3)


# --------------------------------------------------------------------------- selection / model file
def test_validation_selection_and_model_round_trip(prepared, tmp_path):
    params = make_params(prepared, tmp_path, train={"selection": "val", "val_fraction": 0.25, "epochs": 3})
    summary = run_train(params, "cos")
    run = tmp_path / "runs/cos"
    hist = _history(run)
    accs = [h["val/acc"] for h in hist]
    assert summary["val_images"] == N_CLASSES * 3 and summary["train_images"] == N_CLASSES * 9
    assert summary["selected_epoch"] == int(np.argmax(accs)) + 1  # first best
    assert summary["val_acc"] == max(accs)
    info = model_info(run)
    assert info["epoch"] == summary["selected_epoch"] and info["selection"] == "val"
    assert info["input_size"] == SIZE and info["channel_order"] == "BGR" and info["num_classes"] == N_CLASSES
    backbone, head, resolved = load_model(run)
    assert resolved.name == "cos" and resolved.head == "cosface" and resolved.head_params["s"] == 16.0
    assert not backbone.training and head.weight.shape == (N_CLASSES, 32)
    # the stored weights reproduce the selected epoch's validation accuracy
    from marginlab.train.input.datasets import FaceRecordDataset, train_val_split

    labels = FaceRecordDataset(prepared / "train.rec", SIZE).labels
    _, val_idx = train_val_split(labels, 0.25, derive_seed(3, 0))
    ds = FaceRecordDataset(prepared / "train.rec", SIZE, None, indices=val_idx)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.no_grad():
        acc = centre_accuracy(backbone(x), head, torch.as_tensor(ds.labels))
    assert acc == pytest.approx(summary["val_acc"])
    # the probe never contains validation images
    probe = pd.read_parquet(run / "probe/epoch_00.parquet")
    assert not set(probe["index"]) & set(val_idx.tolist())


def test_val_selection_needs_a_fraction(prepared, tmp_path):
    # a config rule: refused when the params are validated, not when training starts (issue #21)
    with pytest.raises((ConfigError, ValueError), match="val_fraction"):
        make_params(prepared, tmp_path, train={"selection": "val", "val_fraction": 0.0})


def test_missing_inputs_give_clear_errors(tmp_path):
    params = make_params(tmp_path / "nowhere", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nowhere/train.rec.*prepare"):
        run_train(params, "cos")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "runs/none")
    bad = tmp_path / "runs/bad"
    bad.mkdir(parents=True)
    torch.save({"weights": 1}, bad / "model.pt")
    with pytest.raises(ModelFileError, match="not a marginlab model"):
        load_model(bad)


def test_stage_cli(prepared, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the stage sets it when unset; keep the env restorable

    import yaml

    import shutil

    shutil.copytree(prepared, tmp_path / "prepared")  # the path policy: a stage's inputs and outputs live in the project
    monkeypatch.chdir(tmp_path)
    params = make_params(tmp_path / "prepared", tmp_path, train={"epochs": 1})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    from marginlab.core.cli import main

    assert main(["train", "cos", "--params", str(tmp_path / "params.yaml")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run"] == "cos" and out["epochs"] == 1
    assert main(["train", "nope", "--params", str(tmp_path / "params.yaml")]) == 2
    assert "run 'nope' is not in params" in capsys.readouterr().err


# --------------------------------------------------------------------------- proxies (unit tests: test_proxy.py)
def test_brisque_run_uses_scores(prepared, tmp_path):
    qdir = tmp_path / "quality"
    qdir.mkdir()
    iq = np.linspace(0.1, 0.9, N_IMAGES)
    pd.DataFrame({"split": "train", "index": np.arange(N_IMAGES), "brisque": 100 * (1 - iq), "iq": iq}).to_parquet(
        qdir / "scores.parquet", index=False)
    params = make_params(prepared, tmp_path, train={"epochs": 1},
                         runs={"b": {"head": "adaface", "proxy": "brisque", "head_params": {"s": 16.0}}})
    run_train(params, "b")
    probe = pd.read_parquet(tmp_path / "runs/b/probe/epoch_01.parquet")
    np.testing.assert_allclose(probe["iq"], iq[probe["index"]], rtol=1e-6)
    stats = _history(tmp_path / "runs/b")[0]
    # the head's running mean is of the IQ signal (in [0, 1]), not of feature norms
    assert 0.1 <= stats["head/batch_mean"] <= 0.9


# --------------------------------------------------------------------------- probe selection
def test_select_probe_stratified_by_quality():
    cands = np.arange(100, 200)
    quality = (cands - 100) / 100.0
    picked = select_probe(cands, 8, seed=0, quality=quality)
    assert len(picked) == 8 and len(set(picked)) == 8 and (np.diff(picked) > 0).all()
    # 8 equal-count bins of the ranking (13,13,13,13,12,12,12,12): one pick per bin
    edges = np.cumsum([0, 13, 13, 13, 13, 12, 12, 12, 12]) + 100
    assert np.histogram(picked, bins=edges)[0].tolist() == [1] * 8
    assert select_probe(cands, 8, seed=0, quality=quality).tolist() == picked.tolist()
    assert select_probe(cands, 8, seed=1, quality=quality).tolist() != picked.tolist()


def test_select_probe_random_and_edge_cases():
    cands = np.arange(50)
    r = select_probe(cands, 10, seed=0)
    assert len(set(r)) == 10 and set(r) <= set(cands)
    assert select_probe(cands, 80, seed=0).tolist() == list(range(50))  # larger than the set: all
    q = np.full(50, np.nan)
    q[:5] = [0.1, 0.2, 0.3, 0.4, 0.5]
    mixed = select_probe(cands, 10, seed=0, quality=q)
    assert set(range(5)) <= set(mixed)  # known-quality images used first
    with pytest.raises(ValueError, match="shape"):
        select_probe(cands, 5, seed=0, quality=np.zeros(3))


# --------------------------------------------------------------------------- logging
@pytest.mark.slow
def test_dvclive_falls_back_in_git_repo_without_commits(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    monkeypatch.chdir(tmp_path / "repo")
    logger = EpochLogger(tmp_path / "repo/live", resume=False)
    assert logger.backend == "plain" and "Empty git repo" in logger.fallback_reason
    logger.log(1, {"train/loss": 2.5, "val/acc": 0.5})
    logger.log(2, {"train/loss": 1.5, "val/acc": float("nan")})
    logger.end()
    summary = json.loads((tmp_path / "repo/live/metrics.json").read_text())
    assert summary["train"]["loss"] == 1.5 and summary["step"] == 2 and summary["val"]["acc"] == "nan"
    tsv = pd.read_csv(tmp_path / "repo/live/plots/metrics/train/loss.tsv", sep="\t")
    assert tsv.to_dict("list") == {"step": [1, 2], "loss": [2.5, 1.5]}


def test_dvclive_and_plain_write_the_same_layout(tmp_path):
    for backend in ("dvclive", "plain"):
        logger = EpochLogger(tmp_path / backend, resume=False, backend=backend)
        assert logger.backend == backend
        for step, v in ((1, 3.0), (2, 2.0), (3, 1.0)):
            logger.log(step, {"train/loss": v})
        logger.end()
        assert logged_steps(tmp_path / backend) == {1, 2, 3}
        truncate_history(tmp_path / backend, keep_below=3)
        assert logged_steps(tmp_path / backend) == {1, 2}
        resumed = EpochLogger(tmp_path / backend, resume=True, backend=backend)
        resumed.log(3, {"train/loss": 0.5})
        resumed.end()
        tsv = pd.read_csv(tmp_path / backend / "plots/metrics/train/loss.tsv", sep="\t")
        assert tsv[["step", "loss"]].to_dict("list") == {"step": [1, 2, 3], "loss": [3.0, 2.0, 0.5]}
        assert json.loads((tmp_path / backend / "metrics.json").read_text())["train"]["loss"] == 0.5
    with pytest.raises(ValueError, match="MARGINLAB_LIVE"):
        EpochLogger(tmp_path / "x", resume=False, backend="tensorboard")


def test_plain_live_fresh_start_clears_history(tmp_path):
    live = PlainLive(tmp_path / "l")
    live.log_metric("a", 1.0)
    live.next_step()
    live = PlainLive(tmp_path / "l", resume=False)
    assert not (tmp_path / "l/plots/metrics/a.tsv").exists()


# --------------------------------------------------------------------------- checkpoint / runtime
def test_checkpoint_round_trip_restores_rngs(tmp_path):
    import random

    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    save_checkpoint(tmp_path / "c.pt", {"rng": capture_rng_state(gen), "epoch": 4})
    expected = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen))
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    gen.manual_seed(0)
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["epoch"] == 4
    restore_rng_state(state["rng"], gen)
    got = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen))
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and torch.equal(got[3], expected[3])


def test_checkpoint_errors_and_atomic_write(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"epoch": 1})
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(path, {"epoch": 2, "bad": Unpicklable()})
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    (tmp_path / "trunc.pt").write_bytes(before[: len(before) // 2])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "trunc.pt")
    torch.save({"epoch": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a marginlab training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")


def test_hostile_checkpoint_is_refused_and_never_executed(tmp_path):
    """A crafted checkpoint.pt (a pickle whose __reduce__ runs a command) is refused by weights_only loading."""
    marker = tmp_path / "PWNED"
    payload = {"format": "marginlab-checkpoint", "version": 2, "epoch": 1, "evil": RunsTouch(marker)}
    torch.save(payload, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"was refused: it holds objects other than tensors.*not loaded"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert not marker.exists()
    # a genuine checkpoint needs nothing beyond weights_only: every field loads with the safe unpickler
    gen = torch.Generator().manual_seed(5)
    np.random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in NumPy's legacy state
    save_checkpoint(tmp_path / "ok.pt", {"rng": capture_rng_state(gen), "probe_tables": {0: b"\x00\x01"},
                                         "history": [{"train/loss": 1.5}], "best": None})
    plain = torch.load(tmp_path / "ok.pt", weights_only=True)
    assert plain["probe_tables"] == {0: b"\x00\x01"} and plain["rng"]["numpy"]["has_gauss"] == 1
    expected = np.random.standard_normal(3)
    np.random.seed(0)
    restore_rng_state(load_checkpoint(tmp_path / "ok.pt")["rng"], gen)
    assert np.array_equal(np.random.standard_normal(3), expected)


def test_runtime_choices():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is None and resolve_amp("off", cpu) is None
    assert resolve_amp("bf16", cpu) is torch.bfloat16 and resolve_amp("fp16", cpu) is torch.float16
    assert derive_seed(42, 0) != derive_seed(42, 1) and derive_seed(42, 0) == derive_seed(42, 0)
    assert 0 <= derive_seed(42, 0) < 2**31


class _Traced(torch.nn.Module):
    """Stands in for torch.compile's wrapper: calls the module it wraps and counts the calls."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize("mode", ["on", "off", "auto"])
def test_train_compile_routes_only_the_training_forward(prepared, tmp_path, monkeypatch, mode):
    """train.compile: the training step calls the compiled backbone; the state dict, optimiser, probe and
    model.pt keep the plain module; a checkpoint does not depend on the switch."""
    wrappers = []

    def fake_compile(module, **kwargs):
        wrappers.append(_Traced(module))
        return wrappers[-1]

    monkeypatch.setattr(torch, "compile", fake_compile)
    params = make_params(prepared, tmp_path, train={"epochs": 1, "compile": mode})
    summary = run_train(params, "cos")
    if mode == "on":
        assert len(wrappers) == 1 and wrappers[0].calls == summary["steps_per_epoch"]  # training steps only
    else:  # auto: this tiny CPU run does not repay a compile
        assert wrappers == []
    backbone, _, _ = load_model(tmp_path / "runs" / "cos")
    assert not any(k.startswith("_orig_mod") or k.startswith("inner.") for k in backbone.state_dict())
    flipped = make_params(prepared, tmp_path, train={"epochs": 1, "compile": "off" if mode == "on" else "on"})
    again = run_train(flipped, "cos")  # same fingerprint: the finished run is not retrained
    assert again["resumed_from_epoch"] == 1
