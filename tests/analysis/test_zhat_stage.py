"""The analysis stage writes zhat.csv, the ẑ figure and the images-seen keys of summary.json (a fake run tree whose
AdaFace probe tables carry a hand-made z_hat column, and one run whose tables predate it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_runs import DEFAULT_RUNS, build_fixture_tree, run_size

from marginlab.analysis.paper_numbers import PAPER_IMAGES_SEEN
from marginlab.analysis.stage import OUTPUT_FILES, run_analyze
from marginlab.analysis.zhat import ZHAT_COLUMNS, zhat_stats
from marginlab.core.config import load_params

RUNS = {k: DEFAULT_RUNS[k] for k in ("adaface-s0", "adaface-s1", "cosface-s0", "adaface-h022-s0")}
EPOCHS = 2


def _add_zhat(root: Path) -> dict[tuple[str, int], np.ndarray]:
    """Write z_hat into the probe tables of adaface-s0/-s1 (NaN for cosface); adaface-h022-s0 keeps the old schema."""
    planted = {}
    for run in ("adaface-s0", "adaface-s1", "cosface-s0"):
        for path in sorted((root / "runs" / run / "probe").glob("epoch_*.parquet")):
            frame = pd.read_parquet(path)
            epoch = int(frame["epoch"].iloc[0])
            rng = np.random.default_rng([epoch, len(run), run.endswith("s1")])
            z = np.clip(rng.normal(0, 0.2 + 0.4 * epoch, len(frame)), -1, 1).astype(np.float32)
            frame["z_hat"] = z if run != "cosface-s0" else np.float32(np.nan)
            frame.to_parquet(path, index=False)
            clean = (frame["pass"].astype(str) == "clean").to_numpy()
            planted[(run, epoch)] = z[clean]
    return planted


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("zhat_stage")
    params_path = build_fixture_tree(root, runs=RUNS, epochs=EPOCHS, probe_size=60)
    planted = _add_zhat(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        summary = run_analyze(load_params(params_path), "analysis", n_resamples=1000, progress=False)
    finally:
        os.chdir(cwd)
    return root, summary, planted


def test_zhat_csv_rows_match_the_probe_tables(analysed):
    root, _, planted = analysed
    assert "zhat.csv" in OUTPUT_FILES
    table = pd.read_csv(root / "analysis" / "zhat.csv")
    assert list(table.columns) == ZHAT_COLUMNS
    assert set(table["run"]) == {"adaface-s0", "adaface-s1"}  # cosface: NaN ẑ; h022: tables without the column
    clean = table[(table["schedule"] == "epoch") & (table["pass"] == "clean")]
    assert len(clean) == 2 * (EPOCHS + 1)
    assert set(table["pass"]) == {"clean", "augmented"}
    steps = run_size(RUNS["adaface-s0"], EPOCHS)
    for row in clean.itertuples(index=False):
        expected = zhat_stats(planted[(row.run, row.epoch)])
        assert row.n == expected["n"] == 60
        for col in ("mean", "q05", "q50", "q95", "share_clip_low", "share_clip_high"):
            assert getattr(row, col) == pytest.approx(expected[col], abs=2e-6), col  # CSV written with 6 digits
        assert row.images_seen == row.epoch * steps["steps_per_epoch"] * steps["batch_size"]
    assert (root / "analysis" / "figures" / "zhat_by_progress.png").stat().st_size > 10_000


def test_summary_has_the_images_seen_ratio_and_final_zhat(analysed):
    root, summary, planted = analysed
    on_disk = json.loads((root / "analysis" / "summary.json").read_text())
    assert on_disk == summary
    seen = run_size(RUNS["adaface-s0"], EPOCHS)["global_steps"] * run_size(RUNS["adaface-s0"], EPOCHS)["batch_size"]
    assert summary["images_seen_reference"] == seen
    assert summary["paper_images_seen"] == PAPER_IMAGES_SEEN
    assert summary["paper_images_seen_ratio"] == pytest.approx(PAPER_IMAGES_SEEN / seen, abs=1e-3)
    q05 = np.mean([np.percentile(planted[(r, EPOCHS)].astype(np.float64), 5) for r in ("adaface-s0", "adaface-s1")])
    assert summary["adaface_final_zhat_q05"] == pytest.approx(q05, abs=1e-5)
