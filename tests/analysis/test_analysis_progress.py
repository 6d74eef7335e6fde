"""Correlations by training progress (#14): correlation_progress.csv rows, the training-progress axis, and
claim 1b at the end of epoch 1 (a training state: one full pass over the data), with the whole curve."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from marginlab.analysis.claims.probe_claims import claim_norm_quality
from marginlab.analysis.cluster_bootstrap import group_rng
from marginlab.analysis.correlation import (
    CORRELATION_COLUMNS,
    PROGRESS_CORRELATION_COLUMNS,
    correlation_table,
    correlation_with_ci,
    progress_correlation_table,
)
from marginlab.analysis.progress import curve_rows, early_rows, training_progress_rows

TOTAL, BATCH = 108, 128  # the default run: 6 epochs × 18 steps of 128 images
STEPS = (0, 1, 2, 4, 9, 108)  # progress 0, 0.9 %, 1.9 %, 3.7 %, 8.3 %, 100 %


def _probe(run: str, step: int, strength: float, n: int = 40) -> pd.DataFrame:
    """A probe table of one step: norm = strength × quality + noise, both passes."""
    rng = np.random.default_rng([step, len(run)])
    q = rng.uniform(0, 1, n)
    frames = []
    for pass_ in ("clean", "augmented"):
        norm = strength * q + rng.normal(0, 0.3, n)
        frames.append(pd.DataFrame({"run": run, "label": "ada", "head": "adaface", "epoch": -(-step // 18),
                                    "pass": pass_, "norm": norm, "p_yi": norm ** 2, "iq": q, "gt_quality": np.nan,
                                    "step": step, "images_seen": step * BATCH, "progress": step / TOTAL}))
    return pd.concat(frames, ignore_index=True)


def test_progress_rows_carry_step_images_and_progress():
    probe = pd.concat([_probe("ada-s0", s, 1.0) for s in (0, 4, 108)], ignore_index=True)
    table = progress_correlation_table(probe, n_resamples=200, seed=3)
    assert list(table.columns) == PROGRESS_CORRELATION_COLUMNS
    # gt_quality is unknown everywhere: no rows; 3 steps × 2 passes × 2 quantities with iq
    assert len(table) == 12 and set(table["target"]) == {"iq"}
    row = table[(table["step"] == 4) & (table["pass"] == "clean") & (table["quantity"] == "norm")].iloc[0]
    assert (row["images_seen"], row["epoch"], row["progress"]) == (512, 1, pytest.approx(4 / 108))
    frame = probe[(probe["step"] == 4) & (probe["pass"] == "clean")]
    expected = correlation_with_ci(frame["norm"].to_numpy(), frame["iq"].to_numpy(), n_resamples=200,
                                   rng=group_rng(3, "ada-s0", "step", 4, "clean", "iq"))
    assert row["spearman"] == pytest.approx(expected.spearman) and row["spearman_lo"] == pytest.approx(expected.spearman_lo)


def test_epoch_rows_keep_their_columns_and_draws():
    probe = _probe("ada-s0", 18, 1.0).drop(columns=["step", "images_seen", "progress"])
    table = correlation_table(probe, n_resamples=200, seed=3)
    assert list(table.columns) == CORRELATION_COLUMNS
    row = table[(table["pass"] == "clean") & (table["quantity"] == "norm")].iloc[0]
    frame = probe[probe["pass"] == "clean"]
    expected = correlation_with_ci(frame["norm"].to_numpy(), frame["iq"].to_numpy(), n_resamples=200,
                                   rng=group_rng(3, "ada-s0", 1, "clean", "iq"))  # the seeding correlation.csv always had
    assert (row["spearman_lo"], row["spearman_hi"]) == pytest.approx((expected.spearman_lo, expected.spearman_hi))


# --------------------------------------------------------------------------- the axis and the early point
def _rows(run: str, places, est=lambda place: (0.3, 0.2, 0.4), columns=PROGRESS_CORRELATION_COLUMNS) -> pd.DataFrame:
    """Hand-made correlation rows (clean/norm/iq plus an ignored augmented row) at each place (step or epoch)."""
    rows = []
    for place in places:
        s, lo, hi = est(place)
        at = ({"step": place, "images_seen": place * BATCH, "progress": place / TOTAL, "epoch": -(-place // 18)}
              if "step" in columns else {"epoch": place})
        base = {"run": run, "label": "ada", "head": "adaface", **at, "quantity": "norm", "target": "iq", "n": 512,
                "pearson": s, "pearson_lo": lo, "pearson_hi": hi}
        rows.append({**base, "pass": "clean", "spearman": s, "spearman_lo": lo, "spearman_hi": hi})
        rows.append({**base, "pass": "augmented", "spearman": -0.5, "spearman_lo": -0.6, "spearman_hi": -0.4})
    return pd.DataFrame(rows, columns=columns)


def _epoch_rows(run: str, est=lambda epoch: (0.3, 0.2, 0.4)) -> pd.DataFrame:
    return _rows(run, range(7), est, CORRELATION_COLUMNS)


def test_early_point_is_the_end_of_epoch_1_not_a_fraction_of_steps():
    """Steps 4 (3.7 %, nearest to the old 1/26) and 9 are inside epoch 1; the epoch-1 probe decides."""
    picked = early_rows(_epoch_rows("ada-s0"), _rows("ada-s0", STEPS), ["ada-s0"])
    assert set(picked["schedule"]) == {"epoch"} and set(picked["epoch"]) == {1}
    assert set(picked["pass"]) == {"clean", "augmented"}
    # the epoch row gets its step and images seen from the run's progress probes: 108 steps / 6 epochs
    assert set(picked["step"]) == {18} and set(picked["images_seen"]) == {18 * BATCH}
    assert picked["progress"].iloc[0] == pytest.approx(1 / 6)


def test_early_point_fallbacks():
    """No epoch-1 epoch-end probe: the last progress probe inside epoch 1 (never step 0); with neither, the
    earliest trained epoch."""
    no_epoch_1 = _epoch_rows("a")
    no_epoch_1 = no_epoch_1[no_epoch_1["epoch"] != 1]
    picked = early_rows(no_epoch_1, _rows("a", STEPS), ["a"])
    assert set(picked["schedule"]) == {"progress"} and set(picked["step"]) == {9}
    picked = early_rows(no_epoch_1, _rows("a", (0, 54, 108)), ["a"])  # nothing trained inside epoch 1
    assert set(picked["schedule"]) == {"epoch"} and set(picked["epoch"]) == {2}
    assert early_rows(no_epoch_1[no_epoch_1["epoch"] == 0], None, ["a"]).empty  # only step 0: no early point


def test_curve_rows_hold_every_probe_point():
    curve = curve_rows(_epoch_rows("a"), _rows("a", STEPS), ["a"])
    clean = curve[curve["pass"] == "clean"]
    assert len(clean) == len(STEPS) + 7  # progress probes and epoch ends (0..6)
    assert list(clean["progress"]) == sorted(clean["progress"])
    assert set(clean.loc[clean["schedule"] == "epoch", "step"]) == {0, 18, 36, 54, 72, 90, 108}


def test_runs_without_progress_probes_fall_back_to_epoch_1():
    axis = training_progress_rows(pd.concat([_epoch_rows("old"), _epoch_rows("new")]), _rows("new", STEPS))
    old = axis[axis["run"] == "old"]
    assert set(old["schedule"]) == {"epoch"} and old["step"].isna().all()
    assert sorted(old["progress"].unique()) == pytest.approx([e / 6 for e in range(7)])  # epoch / last epoch
    assert set(axis.loc[axis["run"] == "new", "schedule"]) == {"progress"}
    picked = early_rows(pd.concat([_epoch_rows("old"), _epoch_rows("new")]), _rows("new", STEPS), ["old", "new"])
    assert picked.groupby("run")["schedule"].first().to_dict() == {"new": "epoch", "old": "epoch"}  # both epoch 1
    assert set(picked["epoch"]) == {1}
    assert picked.loc[picked["run"] == "old", "step"].isna().all() and set(picked.loc[picked["run"] == "new", "step"]) == {18}
    with_eval = pd.concat([_epoch_rows("old"), _epoch_rows("old").assign(**{"pass": "eval:bin:lq"})])
    assert not training_progress_rows(with_eval, None)["pass"].str.startswith("eval:").any()


# --------------------------------------------------------------------------- claim 1b
def _weak_at_epoch_1(place):
    """Clearly positive everywhere except at epoch 1 (and at step 9, inside epoch 1)."""
    return (0.02, -0.05, 0.08) if place in (1, 9) else (0.3, 0.2, 0.4)


def test_claim_1b_is_decided_at_epoch_1_and_keeps_the_curve():
    runs = ["ada-s0", "ada-s1", "ada-s2"]
    shift = {"ada-s0": 0.0, "ada-s1": 0.01, "ada-s2": -0.01}
    corr = pd.concat([_epoch_rows(r, lambda p, r=r: tuple(v + shift[r] for v in _weak_at_epoch_1(p))) for r in runs],
                     ignore_index=True)
    progress = pd.concat([_rows(r, STEPS, lambda p, r=r: tuple(v + shift[r] for v in _weak_at_epoch_1(p))) for r in runs],
                         ignore_index=True)
    c = claim_norm_quality(corr, runs, None, progress_correlation=progress)
    b = c["parts"][1]
    assert b["name"] == "b: early (end of epoch 1)"
    assert b["verdict"] == "not supported"  # 0.02 ± 0.01 over 3 seeds: t-CI [-0.005, 0.045] < 0.1
    assert b["numbers"]["seed_level"]["ci"] == pytest.approx([0.02 - 4.302653 * 0.01 / np.sqrt(3),
                                                              0.02 + 4.302653 * 0.01 / np.sqrt(3)], abs=1e-5)
    assert b["numbers"]["per_run"]["ada-s0"]["schedule"] == "epoch" and b["numbers"]["per_run"]["ada-s0"]["step"] == 18
    numbers = c["numbers"]
    assert (numbers["early_schedule"], numbers["early_epoch"], numbers["early_step"]) == ("epoch", 1, 18)
    curve = b["numbers"]["curve"]
    assert len(curve) == len(STEPS) + 7 and [p["n_runs"] for p in curve] == [3] * len(curve)
    step4 = next(p for p in curve if p["schedule"] == "progress" and p["step"] == 4)
    assert step4["spearman_mean"] == pytest.approx(0.3) and step4["ci"][0] > 0  # not the decision point any more
    json.dumps(c)
    # the same runs without progress probes: still epoch 1 (steps unknown)
    fallback = claim_norm_quality(corr, runs, None)
    assert fallback["parts"][1]["name"] == "b: early (end of epoch 1)" and fallback["numbers"]["early_step"] is None


# --------------------------------------------------------------------------- the stage, end to end
def test_stage_writes_progress_rows_and_states_claim_1b_there(tmp_path, monkeypatch):
    """A fake run tree (tests/fixtures_runs.py: 2 epochs × 6 steps) where the AdaFace runs also have progress
    probes at steps 0, 1, 6 and 12 (step 1: the epoch-1 table with its norms shuffled); CosFace has none."""
    from fixtures_runs import DEFAULT_RUNS, build_fixture_tree

    from marginlab.analysis.stage import run_analyze
    from marginlab.core.config import load_params
    from marginlab.train.probe_schedule import (
        probe_schedule,
        progress_path,
        with_progress,
    )

    runs = {k: DEFAULT_RUNS[k] for k in ("adaface-s0", "adaface-s1", "cosface-s0")}
    params_path = build_fixture_tree(tmp_path, runs=runs, epochs=2, probe_size=60)
    schedule = probe_schedule([0.0, 0.05, 0.5, 1.0], 12, 32)
    assert schedule.steps == (0, 1, 6, 12)
    for run in ("adaface-s0", "adaface-s1"):
        run_dir = tmp_path / "runs" / run
        epoch = {e: pd.read_parquet(run_dir / "probe" / f"epoch_{e:02d}.parquet") for e in (0, 1, 2)}
        # probes now record ẑ; the fixture tree's epoch tables predate it
        epoch = {e: f if "z_hat" in f else f.assign(z_hat=np.nan) for e, f in epoch.items()}
        shuffled = epoch[1].assign(norm=np.random.default_rng(0).permutation(epoch[1]["norm"].to_numpy()))
        for step, frame in ((0, epoch[0]), (1, shuffled), (6, epoch[1]), (12, epoch[2])):
            progress_path(run_dir, step).parent.mkdir(parents=True, exist_ok=True)
            with_progress(frame, step, schedule).to_parquet(progress_path(run_dir, step), index=False)
    monkeypatch.chdir(tmp_path)
    summary = run_analyze(load_params(params_path), "analysis", n_resamples=1000, progress=False)

    prog = pd.read_csv(tmp_path / "analysis/correlation_progress.csv")
    assert list(prog.columns) == PROGRESS_CORRELATION_COLUMNS
    assert len(prog) == 2 * 4 * 2 * 2 and set(prog["pass"]) == {"clean"}  # runs × steps × quantities × targets
    assert sorted(prog["images_seen"].unique()) == [0, 32, 192, 384]
    corr = pd.read_csv(tmp_path / "analysis/correlation.csv")
    key = ["run", "pass", "quantity", "target"]
    at_6 = prog[prog["step"] == 6].set_index(key)["spearman"]
    epoch_1 = corr[(corr["epoch"] == 1) & corr["run"].isin(["adaface-s0", "adaface-s1"])
                   & (corr["pass"] == "clean")].set_index(key)["spearman"]
    pd.testing.assert_series_equal(at_6.sort_index(), epoch_1.sort_index())  # the same table, the same numbers
    claim = json.loads((tmp_path / "analysis/claims.json").read_text())["claims"][0]
    b = claim["parts"][1]
    assert b["name"] == "b: early (end of epoch 1)"  # not step 1, the probe nearest to 1/26
    assert claim["numbers"]["early_images_seen"] == 192 and claim["numbers"]["early_step"] == 6
    assert summary["adaface_early_progress"] == pytest.approx(1 / 2, abs=1e-6)
    early = corr[(corr["epoch"] == 1) & corr["run"].isin(["adaface-s0", "adaface-s1"]) & (corr["pass"] == "clean")
                 & (corr["quantity"] == "norm") & (corr["target"] == "iq")]
    assert summary["adaface_early_spearman_norm_iq"] == pytest.approx(early["spearman"].mean(), abs=1e-6)
    assert len(b["numbers"]["curve"]) == 4 + 3  # 4 progress probes and 3 epoch ends of the two seeds
    assert (tmp_path / "analysis/figures/correlation_vs_progress.png").stat().st_size > 10_000
