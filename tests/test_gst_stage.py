"""The gst stage (Fig. 3): table schema, the seven panels, special cases against closed forms, CLI, errors."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from marginlab.analysis.gst import target_gst
from marginlab.config import load_params
from marginlab.report.gst_figures import (
    EASY_POINT,
    FIG3_PANELS,
    FIGURE_FILES,
    GST_TABLE_COLUMNS,
    HARD_POINT,
    adaface_unclipped_gst,
    compute_gst_table,
    curve_margins,
    fig3_panels,
    write_gst_outputs,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))
import gst as gst_stage

N, CURVE_N = 41, 101
S = 64.0


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def cosface_closed(x, j, m, s=S):
    """Issue #24: x_m = x - m; P = exp(s·x_m) / (exp(s·x_m) + exp(s·j)); g = (P - 1)·s."""
    return (sigmoid(s * (x - m) - s * j) - 1.0) * s


def arcface_closed(x, j, m, s=S):
    th = np.arccos(x)
    return (sigmoid(s * np.cos(th + m) - s * j) - 1.0) * s * np.sin(th + m) / np.sin(th)


@pytest.fixture(scope="module")
def params_file(tmp_path_factory) -> Path:
    """params.yaml with non-default CosFace m and AdaFace m, to see that the stage reads params.heads."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["heads"]["cosface"]["m"] = 0.35
    raw["heads"]["adaface"]["m"] = 0.45
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def stage_out(params_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gst") / "analysis" / "gst"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an earlier run")
    rc = gst_stage.main(["--params", str(params_file), "--out", str(out), "--n", str(N), "--curve-n", str(CURVE_N)])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def table(stage_out) -> pd.DataFrame:
    return pd.read_parquet(stage_out / "gst.parquet")


def _map(table: pd.DataFrame, panel: str) -> pd.DataFrame:
    rows = table[(table["kind"] == "map") & (table["panel"] == panel)]
    assert len(rows) == N * N, panel
    return rows


def test_parquet_schema_and_kinds(table):
    assert list(table.columns) == list(GST_TABLE_COLUMNS)
    assert table["gst"].dtype == np.float64 and table["cos_target"].dtype == np.float64
    assert table["fig3"].dtype == bool
    assert set(table["kind"]) == {"map", "curve", "curve_m", "curve_m_unclipped"}
    np.testing.assert_array_equal(table["abs_gst"].to_numpy(), table["gst"].abs().to_numpy())
    assert np.isfinite(table["gst"]).all()
    # every map covers the same N x N grid over [-0.995, 0.995]
    grid = np.sort(table.loc[table["kind"] == "map", "cos_target"].unique())
    assert len(grid) == N and grid[0] == pytest.approx(-0.995) and grid[-1] == pytest.approx(0.995)


def test_seven_fig3_panels_present(table, stage_out):
    maps = table[table["kind"] == "map"]
    assert list(dict.fromkeys(maps.loc[maps["fig3"], "panel"])) == list(FIG3_PANELS)
    assert len(FIG3_PANELS) == 7
    heads = maps[maps["fig3"]].groupby("panel", sort=False)["head"].first().to_dict()
    assert heads == {"cosface": "cosface", "arcface": "arcface", "magface_mid": "magface",
                     "curricularface_early": "curricularface", "curricularface_late": "curricularface",
                     "adaface_high": "adaface", "adaface_low": "adaface"}
    variants = maps[maps["fig3"]].groupby("panel", sort=False)["variant"].first().to_dict()
    assert variants["adaface_high"] == "z_hat=1" and variants["adaface_low"] == "z_hat=-1"
    assert variants["curricularface_early"] == "t=0" and variants["curricularface_late"] == "t=0.5"
    assert variants["magface_mid"] == "norm=60"  # (l_a + u_a) / 2 = (10 + 110) / 2
    for panel in FIG3_PANELS:
        _map(table, panel)
        assert len(table[(table["kind"] == "curve") & (table["panel"] == panel)]) == CURVE_N
    summary = json.loads((stage_out / "summary.json").read_text())
    assert [p["key"] for p in summary["panels"]] == list(FIG3_PANELS)


def test_figures_written_and_directory_replaced(stage_out):
    from PIL import Image

    assert not (stage_out / "stale.txt").exists()  # the output directory is replaced as a whole
    for name in FIGURE_FILES.values():
        path = stage_out / "figures" / name
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width > 800 and im.height > 300
            pixels = np.asarray(im.convert("RGB"), dtype=np.float64)
        assert pixels.std() > 20  # not a blank canvas
    assert sorted(p.name for p in (stage_out / "figures").iterdir()) == sorted(FIGURE_FILES.values())


def test_hyperparameters_come_from_params(table):
    rows = _map(table, "cosface")
    assert json.loads(rows["hyperparameters"].iloc[0]) == {"s": 64.0, "m": 0.35}
    assert rows["title"].iloc[0] == "CosFace (m=0.35)"
    x, j = rows["cos_target"].to_numpy(), rows["cos_nontarget"].to_numpy()
    np.testing.assert_allclose(rows["gst"].to_numpy(), cosface_closed(x, j, 0.35), atol=1e-9)
    ada = json.loads(_map(table, "adaface_high")["hyperparameters"].iloc[0])
    assert ada == {"s": 64.0, "m": 0.45, "h": 0.333}  # t_alpha does not enter the GST


def test_adaface_low_norm_equals_arcface_with_same_m(table):
    rows = _map(table, "adaface_low")
    x, j = rows["cos_target"].to_numpy(), rows["cos_nontarget"].to_numpy()
    m = 0.45
    ok = (np.arccos(x) + m < math.pi - 1e-3) & (np.abs(x) < 1 - 1e-3)
    assert ok.sum() > 0.8 * len(x)
    g = rows["gst"].to_numpy()
    np.testing.assert_allclose(g[ok], arcface_closed(x, j, m)[ok], atol=1e-8)
    arc = target_gst("arcface", x, j, hyperparameters={"s": S, "m": m})  # the ArcFace head itself
    np.testing.assert_allclose(g[ok], arc[ok], atol=1e-9)
    # ArcFace with its own (different) margin is not the same map
    assert np.abs(g[ok] - target_gst("arcface", x, j)[ok]).max() > 1.0


def test_adaface_zero_norm_equals_cosface_with_same_m(table):
    rows = _map(table, "adaface_z0")
    x, j = rows["cos_target"].to_numpy(), rows["cos_nontarget"].to_numpy()
    np.testing.assert_allclose(rows["gst"].to_numpy(), cosface_closed(x, j, 0.45), atol=1e-8)
    np.testing.assert_allclose(rows["gst"].to_numpy(), target_gst("cosface", x, j, hyperparameters={"m": 0.45}), atol=1e-9)


def test_summary_checks_and_emphasis(stage_out):
    s = json.loads((stage_out / "summary.json").read_text())
    sc = s["special_cases"]
    assert sc["adaface_zhat_minus1_vs_arcface"]["max_abs_diff"] < 1e-8
    assert sc["adaface_zhat0_vs_cosface"]["max_abs_diff"] < 1e-8
    assert sc["adaface_zhat0_vs_cosface"]["m"] == 0.45
    e = s["emphasis"]["panels"]
    # CosFace by hand at m = 0.35: |g| = 64·(1 - σ(64·(x - m - j)))
    easy = 64 * (1 - 1 / (1 + math.exp(-64 * (EASY_POINT[0] - 0.35 - EASY_POINT[1]))))
    hard = 64 * (1 - 1 / (1 + math.exp(-64 * (HARD_POINT[0] - 0.35 - HARD_POINT[1]))))
    assert e["cosface"]["easy_abs_gst"] == pytest.approx(easy, rel=1e-9)
    assert e["cosface"]["hard_abs_gst"] == pytest.approx(hard, rel=1e-9)
    # the paper's Fig. 3 reading: AdaFace favours the hard sample at high norm, disfavours it at low norm
    assert e["adaface_high"]["hard_over_easy"] > 1.0 > e["adaface_low"]["hard_over_easy"]
    assert s["wall_time_s"] > 0 and s["preset"] == "default"
    assert s["curve_margins"] == [0.45, 0.5, 0.7]


def test_adaface_high_norm_curves_flat_region_and_unclipped_sign_change(table):
    clipped = table[table["kind"] == "curve_m"]
    unclipped = table[table["kind"] == "curve_m_unclipped"]
    assert sorted({json.loads(h)["m"] for h in clipped["hyperparameters"]}) == [0.45, 0.5, 0.7]
    for panel, rows in clipped.groupby("panel"):
        m = json.loads(rows["hyperparameters"].iloc[0])["m"]
        rows = rows.sort_values("cos_target")
        ref = unclipped[unclipped["panel"] == panel].sort_values("cos_target")
        x, g, gu = rows["cos_target"].to_numpy(), rows["gst"].to_numpy(), ref["gst"].to_numpy()
        beyond = x > math.cos(m) + 2e-3  # θ < m: the head clips the shifted angle, no gradient
        inside = (x < math.cos(m) - 2e-3) & (x > -0.99)
        assert beyond.any() and np.all(g[beyond] == 0.0)
        assert np.all(g[inside] < 0)
        np.testing.assert_allclose(g[inside], gu[inside], atol=1e-8)  # same function where nothing is clipped
        assert np.all(gu[beyond] > 0)  # without the clip the sign flips beyond cos m ...
        assert gu[-1] > 5 * S  # ... and it diverges towards cos θ_y = 1


def test_unclipped_closed_form_by_hand():
    # θ = 60°, m = 0.4, ẑ = 1, j = 0.5, s = 64: f = 64·(cos(π/3 - 0.4) - 0.8), f' = 64·sin(π/3 - 0.4)/sin(π/3)
    th = math.pi / 3
    f = 64 * (math.cos(th - 0.4) - 0.8)
    p = 1 / (1 + math.exp(64 * 0.5 - f))
    expected = (p - 1) * 64 * math.sin(th - 0.4) / math.sin(th)
    assert adaface_unclipped_gst(0.5, 0.5, m=0.4, s=64.0) == pytest.approx(expected, rel=1e-12)
    # ẑ = 0 is CosFace's closed form (no angle shift)
    x = np.linspace(-0.9, 0.9, 7)
    np.testing.assert_allclose(adaface_unclipped_gst(x, 0.1, m=0.4, s=64.0, z_hat=0.0), cosface_closed(x, 0.1, 0.4), atol=1e-12)
    with pytest.raises(ValueError, match="cos_target"):
        adaface_unclipped_gst(1.0, 0.5, m=0.4, s=64.0)


def test_map_orientation(table):
    rows = _map(table, "cosface")
    easy = rows[(rows["cos_target"] > 0.99) & (rows["cos_nontarget"] < -0.99)]["abs_gst"]
    hard = rows[(rows["cos_target"] < -0.99) & (rows["cos_nontarget"] > 0.99)]["abs_gst"]
    assert easy.iloc[0] < 1e-6 and hard.iloc[0] == pytest.approx(64.0)


def test_curve_margins():
    assert curve_margins(0.4) == [0.4, 0.5, 0.7]
    assert curve_margins(0.5) == [0.5, 0.7]
    assert curve_margins(0.3, (0.6,)) == [0.3, 0.6]


def test_errors(tmp_path, capsys):
    heads = load_params(ROOT / "params.yaml").heads.model_dump()
    without = {k: v for k, v in heads.items() if k != "adaface"}
    with pytest.raises(KeyError, match="adaface"):
        fig3_panels(without)
    with pytest.raises(ValueError, match="grid sizes"):
        compute_gst_table(heads, n=2)
    with pytest.raises(ValueError, match="limits"):
        compute_gst_table(heads, limit=1.0)
    with pytest.raises(TypeError, match="heads must be"):
        fig3_panels(["adaface"])
    bad = tmp_path / "params.yaml"
    bad.write_text("heads:\n  cosface: {m: -1}\n")
    assert gst_stage.main(["--params", str(bad), "--out", str(tmp_path / "gst")]) == 2
    err = capsys.readouterr().err
    assert "heads.cosface.m" in err and not (tmp_path / "gst").exists()


def test_failed_write_leaves_previous_output(tmp_path, monkeypatch):
    import marginlab.report.gst_figures as gf

    out = tmp_path / "gst"
    out.mkdir()
    (out / "gst.parquet").write_text("previous")
    monkeypatch.setattr(gf, "plot_gst_curves", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    heads = load_params(ROOT / "params.yaml").heads
    with pytest.raises(RuntimeError, match="disk full"):
        write_gst_outputs(heads, out, n=11, curve_n=21)
    assert (out / "gst.parquet").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gst"]  # no temporary directory left behind


def test_grid_settings_come_from_params_gst(tmp_path):
    """params.gst sets the grid; the CLI flags override it for one run; every params file carries the section."""
    from marginlab.config import ConfigError, GstConfig

    for path in [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]:
        raw = yaml.safe_load(path.read_text())
        assert raw["gst"] == GstConfig().model_dump(), path.name
        assert load_params(path).gst == GstConfig()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["gst"] = {"n": 5, "curve_n": 7, "cos_nontarget": 0.25}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert gst_stage.main(["--params", str(params), "--out", str(tmp_path / "a")]) == 0
    t = pd.read_parquet(tmp_path / "a" / "gst.parquet")
    assert t.loc[t["kind"] == "map", "cos_target"].nunique() == 5
    curves = t[t["kind"] == "curve"]
    assert curves["cos_target"].nunique() == 7 and set(curves["cos_nontarget"]) == {0.25}
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["grid"]["n"] == 5
    assert gst_stage.main(["--params", str(params), "--out", str(tmp_path / "b"), "--n", "3", "--cos-nontarget", "0"]) == 0
    t = pd.read_parquet(tmp_path / "b" / "gst.parquet")
    assert t.loc[t["kind"] == "map", "cos_target"].nunique() == 3
    assert set(t.loc[t["kind"] == "curve", "cos_nontarget"]) == {0.0}
    raw["gst"] = {"n": 2, "cos_nontarget": 1.5, "grid": 3}
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_params(params)
    assert all(key in str(err.value) for key in ("gst.n", "gst.cos_nontarget", "gst.grid"))
