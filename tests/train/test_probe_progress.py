"""Probes by training progress (#14): the schedule, its validation, the files a run writes, that probing
leaves training bit-identical, and that the files survive a resume byte for byte.

The training tests share three tiny runs (tests/tiny_train.py: 3 epochs × 6 steps of 16 images, so
18 steps) trained once per module: ``plain`` without progress probes, ``probed`` with :data:`FRACTIONS`
(steps 0, 1, 2, 7, 9, 18: inside epochs 1 and 2, and the last step), and ``killed``, the same run
interrupted in epoch 2 after its probes at steps 7 and 9 and resumed.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from tiny_train import make_params

from marginlab.core.config import ConfigError, validate_params
from marginlab.train import TrainHooks, run_train, runtime
from marginlab.train.callbacks import Probing
from marginlab.train.context import build_context
from marginlab.train.job import TrainJob
from marginlab.train.probe import PROBE_COLUMNS
from marginlab.train.probe_schedule import (
    PROGRESS_COLUMNS,
    probe_schedule,
    progress_path,
)

DEFAULT = [0.0, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0]
FRACTIONS = [0.0, 0.01, 0.04, 0.1, 0.4, 0.5, 1.0]
STEPS = [0, 1, 2, 7, 9, 18]  # round(f * 18): 0, 0.18, 0.72, 1.8, 7.2, 9, 18
TOTAL, BATCH, PER_EPOCH = 18, 16, 6
TIMING = ("train/images_per_s", "train/seconds")


# --------------------------------------------------------------------------- schedule
def test_default_schedule_of_the_default_run():
    """The default run: 6 epochs × 18 steps of 128 images."""
    s = probe_schedule(DEFAULT, 108, 128)
    # 0, 1.08, 2.16, 4.32, 8.64, 17.28, 34.56, 69.12, 108
    assert s.steps == (0, 1, 2, 4, 9, 17, 35, 69, 108)
    assert s.collapsed() == {}
    summary = s.as_summary()
    assert summary["fractions"] == DEFAULT and summary["total_steps"] == 108
    assert summary["images_seen"] == [0, 128, 256, 512, 1152, 2176, 4480, 8832, 13824]
    assert summary["progress"] == pytest.approx([0, 1 / 108, 2 / 108, 4 / 108, 9 / 108, 17 / 108, 35 / 108, 69 / 108, 1])
    assert summary["collapsed"] == []
    json.dumps(summary)


def test_short_run_collapses_fractions_onto_one_step():
    s = probe_schedule(DEFAULT, TOTAL, BATCH)
    # 0, 0.18, 0.36 -> 0; 0.72, 1.44 -> 1; 2.88 -> 3; 5.76 -> 6; 11.52 -> 12; 18
    assert s.steps == (0, 1, 3, 6, 12, 18)
    assert s.collapsed() == {0: (0.0, 0.01, 0.02), 1: (0.04, 0.08)}
    assert s.as_summary()["collapsed"] == [{"step": 0, "fractions": [0.0, 0.01, 0.02]},
                                           {"step": 1, "fractions": [0.04, 0.08]}]
    assert probe_schedule([0.5, 0.7], 5, 1).steps == (2, 4)  # 2.5 -> 2 (half to even, as the LR milestones), 3.5 -> 4


def test_empty_schedule_and_bad_sizes():
    s = probe_schedule([], 108, 128)
    assert s.steps == () and s.as_summary()["steps"] == []
    with pytest.raises(ValueError, match="total_steps"):
        probe_schedule(DEFAULT, 0, 128)


@pytest.mark.parametrize("value", [[0.5, 0.1], [0.1, 0.1], [0.0, 1.5], [-0.01, 0.5], [float("nan")]])
def test_bad_fractions_name_the_key(value):
    with pytest.raises(ConfigError) as exc:
        validate_params({"train": {"probe_progress": value}}, source="params.yaml")
    assert "- train.probe_progress" in str(exc.value) and "increasing without repeats" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        validate_params({"runs": {"x": {"head": "adaface", "train": {"probe_progress": value}}}}, source="params.yaml")
    assert "- runs.x.train.probe_progress" in str(exc.value)


def test_fractions_default_and_disabled():
    assert validate_params({}).train.probe_progress == DEFAULT
    assert validate_params({"train": {"probe_progress": []}}).train.probe_progress == []


# --------------------------------------------------------------------------- training
class CaptureAt:
    """on_step_end hook: copies of the weights right after global step ``step``."""

    def __init__(self, step: int):
        self.step, self.states = step, None

    def __call__(self, epoch, step, state, loss):
        if state.global_step == self.step:
            self.states = ({k: v.clone() for k, v in state.backbone.state_dict().items()},
                           {k: v.clone() for k, v in state.head.state_dict().items()})


def _kill_in_epoch_2(epoch, step, state):
    if epoch == 2 and step == 3:  # before the 10th step: the probes at steps 7 and 9 are written
        raise KeyboardInterrupt("simulated kill")


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    """The three runs of the module docstring; returns (params, runs dir, summaries, captured weights)."""
    tmp = tmp_path_factory.mktemp("progress")
    spec = {"head": "adaface", "head_params": {"s": 16.0}}
    runs = {"plain": {**spec, "train": {"probe_progress": []}}, "probed": spec, "killed": spec}
    params = make_params(tiny_prepared, tmp, runs=runs, train={"probe_progress": FRACTIONS})
    capture = CaptureAt(7)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # dvclive looks for a repository from the working directory: keep it out of the project's
        summaries = {"plain": run_train(params, "plain"), "probed": run_train(params, "probed", hooks=TrainHooks(on_step_end=capture))}
        with pytest.raises(KeyboardInterrupt):
            run_train(params, "killed", hooks=TrainHooks(on_step=_kill_in_epoch_2))
        killed = tmp / "runs" / "killed"
        interrupted = sorted(p.name for p in (killed / "probe/progress").glob("*.parquet"))
        # a tool deletes an output the checkpoint holds; a stale file of the interrupted epoch is left behind
        progress_path(killed, 2).unlink()
        progress_path(killed, 9).write_bytes(b"stale")
        summaries["killed"] = run_train(params, "killed")
    return params, tmp / "runs", summaries, capture.states, interrupted


def _progress(runs_dir, run, step) -> pd.DataFrame:
    return pd.read_parquet(progress_path(runs_dir / run, step))


def _epoch(runs_dir, run, epoch) -> pd.DataFrame:
    return pd.read_parquet(runs_dir / run / "probe" / f"epoch_{epoch:02d}.parquet")


def test_run_writes_progress_files_with_steps_and_images_seen(trained):
    _, runs_dir, summaries, _, _ = trained
    files = sorted(p.name for p in (runs_dir / "probed/probe/progress").iterdir())
    assert files == [f"step_{s:07d}.parquet" for s in STEPS]
    for step in STEPS:
        f = _progress(runs_dir, "probed", step)
        assert tuple(f.columns) == PROGRESS_COLUMNS and len(f) == 24  # the clean pass only
        assert (f["pass"] == "clean").all()
        assert (f["step"] == step).all() and (f["images_seen"] == step * BATCH).all()
        assert (f["progress"] == step / TOTAL).all()
        assert (f["epoch"] == -(-step // PER_EPOCH)).all()  # the epoch the step belongs to; 0 before training
    schedule = summaries["probed"]["probe_schedule"]
    assert schedule["steps"] == STEPS and schedule["images_seen"] == [s * BATCH for s in STEPS]
    assert schedule["fractions"] == FRACTIONS and schedule["collapsed"] == [{"step": 0, "fractions": [0.0, 0.01]}]
    saved = json.loads((runs_dir / "probed/train_summary.json").read_text())
    assert saved["probe_schedule"] == schedule
    assert not (runs_dir / "plain/probe/progress").exists() and summaries["plain"]["probe_schedule"]["steps"] == []


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["pass"] == "clean"].reset_index(drop=True)


def test_step_0_and_last_step_are_the_epoch_tables(trained):
    _, runs_dir, _, _, _ = trained
    cols = list(PROBE_COLUMNS)
    pd.testing.assert_frame_equal(_progress(runs_dir, "probed", 0)[cols], _clean(_epoch(runs_dir, "probed", 0)))
    pd.testing.assert_frame_equal(_progress(runs_dir, "probed", 18)[cols], _clean(_epoch(runs_dir, "probed", 3)))


def test_probe_inside_an_epoch_sees_the_weights_after_that_step(trained):
    """Step 7 (inside epoch 2), measured again from the weights a hook copied right after that step."""
    params, runs_dir, _, (backbone, head), _ = trained
    with runtime.determinism(torch.device("cpu")):
        ctx = build_context(TrainJob.from_params(params, "probed"))
        ctx.backbone.load_state_dict(backbone)
        ctx.head.load_state_dict(head)
        probe = Probing(ctx).probe
        same = {"batch_size": 64, "device": ctx.device, "channels_last": ctx.channels_last,
                "recalibrate_batch": params.run("probed").train.batch_size}  # as the training callback probes
        again = probe.measure(2, ctx.backbone, ctx.head, **same)
        clean_only = probe.measure(2, ctx.backbone, ctx.head, passes=("clean",), **same)
        with pytest.raises(ValueError, match="unknown probe pass"):
            probe.measure(2, ctx.backbone, ctx.head, batch_size=64, device=ctx.device, passes=("blurred",))
    pd.testing.assert_frame_equal(clean_only, _clean(again))  # one pass alone = that pass of both
    assert list(again["pass"].cat.categories) == ["augmented", "clean"] == list(clean_only["pass"].cat.categories)
    pd.testing.assert_frame_equal(_progress(runs_dir, "probed", 7)[list(PROBE_COLUMNS)], _clean(again))
    assert not _progress(runs_dir, "probed", 7)["norm"].equals(_epoch(runs_dir, "probed", 1)["norm"])


def test_probing_leaves_training_bit_identical(trained):
    _, runs_dir, summaries, _, _ = trained
    plain, probed = (torch.load(runs_dir / r / "model.pt", weights_only=True) for r in ("plain", "probed"))
    for part in ("backbone", "head"):  # weights, BatchNorm running statistics and head state
        assert plain[part].keys() == probed[part].keys()
        for k in plain[part]:
            assert torch.equal(plain[part][k], probed[part][k]), (part, k)
    history = [[{k: v for k, v in m.items() if k not in TIMING}
                for m in torch.load(runs_dir / r / "checkpoint.pt", weights_only=False)["history"]] for r in ("plain", "probed")]
    assert history[0] == history[1]
    assert summaries["plain"]["final_loss"] == summaries["probed"]["final_loss"]
    for e in range(4):
        pd.testing.assert_frame_equal(_epoch(runs_dir, "plain", e), _epoch(runs_dir, "probed", e))


def test_resumed_run_ends_with_the_same_progress_files(trained):
    _, runs_dir, summaries, _, interrupted = trained
    assert interrupted == [f"step_{s:07d}.parquet" for s in (0, 1, 2, 7, 9)]
    assert summaries["killed"]["resumed_from_epoch"] == 1
    for step in STEPS:
        assert progress_path(runs_dir / "killed", step).read_bytes() == progress_path(runs_dir / "probed", step).read_bytes(), step
    assert sorted(p.name for p in (runs_dir / "killed/probe/progress").iterdir()) == \
        sorted(p.name for p in (runs_dir / "probed/probe/progress").iterdir())
