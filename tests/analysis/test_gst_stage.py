"""The gst stage (Fig. 3): table schema, panels from the head registry, special cases against closed forms,
the one emphasis definition, params, CLI, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from marginlab.core.ownership import write_marker
from pipeline_helpers import stage_command
from marginlab.analysis.gst import EASY_POINT, HARD_POINT, emphasis, target_gst
from marginlab.analysis.gst_study import (
    FIGURE_FILES,
    GST_TABLE_COLUMNS,
    compute_gst_table,
    curve_margins,
    gst_panels,
    head_hyperparameters,
    panel_key,
    state_level_panels,
    write_gst_outputs,
)
from marginlab.analysis.paper_numbers import FIG3_PANELS
from marginlab.core.config import load_params
from marginlab.heads import HEAD_NAMES, HEADS, AdaFace

ROOT = Path(__file__).resolve().parents[2]
gst_stage = stage_command("gst")

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


def adaface_unclipped_closed(x, j, *, m, s=S, z_hat=1.0):
    """AdaFace's GST *without* the angle clip, the closed form of the issue #24 interactive plot.

    f(x) = s · (cos(θ - m·ẑ) - m·ẑ - m) with θ = arccos x; f'(x) = s · sin(θ - m·ẑ) / sin θ;
    P = σ(f - s·j); g = (P - 1) · f'. Written out independently of the head code, as a check on it.
    """
    theta = np.arccos(x)
    shift = m * z_hat
    f = s * (np.cos(theta - shift) - shift - m)
    return (sigmoid(f - s * j) - 1.0) * s * np.sin(theta - shift) / np.sin(theta)


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
    write_marker(out)  # an earlier run's output (atomic_dir replaces only folders it marked)
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
    assert set(table["kind"]) == {"map", "curve", "curve_m"}
    np.testing.assert_array_equal(table["abs_gst"].to_numpy(), table["gst"].abs().to_numpy())
    assert np.isfinite(table["gst"]).all()
    # every map covers the same N x N grid over [-0.995, 0.995]
    grid = np.sort(table.loc[table["kind"] == "map", "cos_target"].unique())
    assert len(grid) == N and grid[0] == pytest.approx(-0.995) and grid[-1] == pytest.approx(0.995)


ADA_HIGH, ADA_LOW, ADA_ZERO = (panel_key("adaface", {"z_hat": z}) for z in (1.0, -1.0, 0.0))


def test_panels_come_from_the_head_registry(table, stage_out):
    """One map panel per registered head and GST variant, in table order; the paper's seven marked fig3."""
    expected = [(name, v) for name in HEAD_NAMES for v in HEADS[name].gst_variants]
    maps = table[table["kind"] == "map"]
    summary = json.loads((stage_out / "summary.json").read_text())
    keys = [panel_key(h, v) for h, v in expected]
    assert summary["figure_panels"]["maps"] == keys == [p["key"] for p in summary["panels"]]
    assert list(dict.fromkeys(table.loc[table["kind"] == "curve", "panel"])) == keys
    for key in keys:
        _map(table, key)
        assert len(table[(table["kind"] == "curve") & (table["panel"] == key)]) == CURVE_N
    paper = [panel_key(p.head, p.variant) for p in FIG3_PANELS]
    assert len(paper) == 7 and set(paper) <= set(keys)
    assert sorted(maps.loc[maps["fig3"], "panel"].unique()) == sorted(paper)
    heads = maps.groupby("panel", sort=False)["head"].first().to_dict()
    variants = maps.groupby("panel", sort=False)["variant"].first().to_dict()
    assert heads[ADA_HIGH] == "adaface" and variants[ADA_HIGH] == "z_hat=1" and variants[ADA_LOW] == "z_hat=-1"
    assert variants["curricularface_t=0"] == "t=0" and variants["curricularface_t=0.5"] == "t=0.5"
    assert variants["magface_norm=60"] == "norm=60"
    titles = maps.groupby("panel", sort=False)["title"].first().to_dict()
    assert titles[ADA_HIGH].startswith("AdaFace high norm, ẑ=1 (m=0.45") and titles[ADA_LOW].startswith("AdaFace low norm")
    assert titles["curricularface_t=0.5"] == "CurricularFace late, t=0.5 (m=0.5)"


def test_elasticface_is_drawn_without_an_edit_here(table, stage_out):
    """The seventh head, added through one file, is in the parquet, the maps figure, the curves and the emphasis table."""
    assert "elasticface" in HEAD_NAMES
    rows = _map(table, "elasticface")
    assert set(rows["head"]) == {"elasticface"} and not rows["fig3"].any()
    assert json.loads(rows["hyperparameters"].iloc[0]) == {"s": 64.0, "m": 0.5, "sigma": 0.05}
    assert rows["title"].iloc[0] == "ElasticFace (m=0.5, sigma=0.05)"
    # outside training ElasticFace is ArcFace with margin m: its map is ArcFace's
    arc = _map(table, "arcface")
    np.testing.assert_allclose(rows["gst"].to_numpy(), arc["gst"].to_numpy(), atol=1e-12)
    summary = json.loads((stage_out / "summary.json").read_text())
    assert "elasticface" in summary["figure_panels"]["maps"] and "elasticface" in summary["emphasis"]["panels"]
    assert "elasticface" in summary["heads"]
    assert (table[table["kind"] == "curve"]["panel"] == "elasticface").sum() == CURVE_N


def test_state_levels_are_the_variants_and_their_midpoints(table, stage_out):
    heads = load_params(ROOT / "params.yaml").heads
    rows = state_level_panels(heads)
    assert [row[0].head for row in rows] == [h for h in HEAD_NAMES if len(HEADS[h].gst_variants) > 1]
    ada = next(row for row in rows if row[0].head == "adaface")
    assert [p.variant for p in ada] == [{"z_hat": z} for z in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    mag = next(row for row in rows if row[0].head == "magface")
    assert [p.variant["norm"] for p in mag] == [10.0, 35.0, 60.0, 85.0, 110.0]
    summary = json.loads((stage_out / "summary.json").read_text())
    assert summary["figure_panels"]["levels"] == [[p.key for p in row] for row in rows]
    for row in rows:
        for p in row:
            _map(table, p.key)


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
    ada = json.loads(_map(table, ADA_HIGH)["hyperparameters"].iloc[0])
    # the params entry (t_alpha and stats_init do not enter the GST: each panel sets the state itself)
    assert ada == {"s": 64.0, "m": 0.45, "h": 0.333, "t_alpha": 0.01, "stats_init": "bias_corrected"}


def test_adaface_low_norm_equals_arcface_with_same_m(table):
    rows = _map(table, ADA_LOW)
    x, j = rows["cos_target"].to_numpy(), rows["cos_nontarget"].to_numpy()
    m = 0.45
    ok = (np.arccos(x) + m < math.pi - AdaFace.eps) & (np.abs(x) < 1 - AdaFace.eps)
    assert ok.sum() > 0.8 * len(x)
    g = rows["gst"].to_numpy()
    np.testing.assert_allclose(g[ok], arcface_closed(x, j, m)[ok], atol=1e-8)
    arc = target_gst("arcface", x, j, hyperparameters={"s": S, "m": m})  # the ArcFace head itself
    np.testing.assert_allclose(g[ok], arc[ok], atol=1e-9)
    # ArcFace with its own (different) margin is not the same map
    assert np.abs(g[ok] - target_gst("arcface", x, j)[ok]).max() > 1.0


def test_adaface_zero_norm_equals_cosface_with_same_m(table):
    rows = _map(table, ADA_ZERO)
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
    assert s["emphasis"]["easy_point"] == list(EASY_POINT) and s["emphasis"]["hard_point"] == list(HARD_POINT)
    # CosFace by hand at m = 0.35: |g| = 64·(1 - σ(64·(x - m - j)))
    easy = 64 * (1 - 1 / (1 + math.exp(-64 * (EASY_POINT[0] - 0.35 - EASY_POINT[1]))))
    hard = 64 * (1 - 1 / (1 + math.exp(-64 * (HARD_POINT[0] - 0.35 - HARD_POINT[1]))))
    assert e["cosface"]["easy_abs_gst"] == pytest.approx(easy, rel=1e-9)
    assert e["cosface"]["hard_abs_gst"] == pytest.approx(hard, rel=1e-9)
    # the paper's Fig. 3 reading: AdaFace favours the hard sample at high norm, disfavours it at low norm
    assert e[ADA_HIGH]["hard_over_easy"] > 1.0 > e[ADA_LOW]["hard_over_easy"]
    assert s["wall_time_s"] > 0 and s["preset"] == "default"
    assert s["curve_margins"] == [0.45, 0.5, 0.7]


def test_emphasis_is_one_definition_for_figure_and_claim(stage_out, params_file):
    """The figure's emphasis table and claim 2 are both marginlab.analysis.gst.emphasis; neither redefines it."""
    from marginlab.analysis.claims.margin_form_claim import claim_margin_form

    s = json.loads((stage_out / "summary.json").read_text())
    heads = load_params(params_file).heads
    for p in gst_panels(heads):
        entry = s["emphasis"]["panels"][p.key]
        assert {k: entry[k] for k in ("easy_abs_gst", "hard_abs_gst", "hard_over_easy")} == pytest.approx(
            emphasis(p.head, p.variant, hyperparameters=p.hyperparameters), rel=1e-12)
    claim = claim_margin_form(heads.adaface.model_dump())["parts"][0]["numbers"]
    assert claim["easy_point"] == s["emphasis"]["easy_point"] and claim["hard_point"] == s["emphasis"]["hard_point"]
    for z, key in ((1.0, ADA_HIGH), (-1.0, ADA_LOW)):
        assert claim["ratios"][f"adaface z_hat={z:+g}"]["hard_over_easy"] == pytest.approx(
            s["emphasis"]["panels"][key]["hard_over_easy"], abs=1e-6)
    src = ROOT / "src" / "marginlab" / "analysis"
    for module in ("claims/margin_form_claim.py", "gst_study.py", "gst_figures.py", "figures.py"):
        text = (src / module).read_text()
        assert "EASY_POINT =" not in text and "HARD_POINT =" not in text and "hard_offset" not in text, module


def test_adaface_high_norm_curves_flat_region_against_the_unclipped_closed_form(table, stage_out):
    clipped = table[table["kind"] == "curve_m"]
    assert set(table["kind"]) == {"map", "curve", "curve_m"}
    assert sorted({json.loads(h)["m"] for h in clipped["hyperparameters"]}) == [0.45, 0.5, 0.7]
    flat = json.loads((stage_out / "summary.json").read_text())["flat_region"]
    for _, rows in clipped.groupby("panel"):
        m = json.loads(rows["hyperparameters"].iloc[0])["m"]
        rows = rows.sort_values("cos_target")
        x, g = rows["cos_target"].to_numpy(), rows["gst"].to_numpy()
        gu = adaface_unclipped_closed(x, 0.5, m=m)
        beyond = x > math.cos(m) + 2e-3  # θ < m: the head clips the shifted angle, no gradient
        inside = (x < math.cos(m) - 2e-3) & (x > -0.99)
        assert beyond.any() and np.all(g[beyond] == 0.0)
        assert np.all(g[inside] < 0)
        np.testing.assert_allclose(g[inside], gu[inside], atol=1e-8)  # same function where nothing is clipped
        assert np.all(gu[beyond] > 0)  # without the clip the sign flips beyond cos m ...
        assert gu[-1] > 5 * S  # ... and it diverges towards cos θ_y = 1
        f = flat[f"m={m:g}"]
        assert f["last_nonzero_cos_target"] <= math.cos(m) and f["zero_share_of_curve"] == pytest.approx((g == 0).mean())


def test_unclipped_closed_form_by_hand():
    # θ = 60°, m = 0.4, ẑ = 1, j = 0.5, s = 64: f = 64·(cos(π/3 - 0.4) - 0.8), f' = 64·sin(π/3 - 0.4)/sin(π/3)
    th = math.pi / 3
    f = 64 * (math.cos(th - 0.4) - 0.8)
    p = 1 / (1 + math.exp(64 * 0.5 - f))
    expected = (p - 1) * 64 * math.sin(th - 0.4) / math.sin(th)
    assert adaface_unclipped_closed(0.5, 0.5, m=0.4) == pytest.approx(expected, rel=1e-12)
    # ẑ = 0 is CosFace's closed form (no angle shift); ẑ = -1 is ArcFace's
    x = np.linspace(-0.9, 0.9, 7)
    np.testing.assert_allclose(adaface_unclipped_closed(x, 0.1, m=0.4, z_hat=0.0), cosface_closed(x, 0.1, 0.4), atol=1e-12)
    np.testing.assert_allclose(adaface_unclipped_closed(x, 0.1, m=0.4, z_hat=-1.0), arcface_closed(x, 0.1, 0.4), atol=1e-12)


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
    # a head left out of a plain mapping gets its registry defaults; an unknown one is refused
    without = {k: v for k, v in heads.items() if k != "adaface"}
    assert head_hyperparameters(without)["adaface"] == {**head_hyperparameters(heads)["adaface"], "stats_init": "official"}
    with pytest.raises(ValueError, match="unknown head"):
        gst_panels({**heads, "sphereface": {"m": 1.35}})
    with pytest.raises(ValueError, match="grid sizes"):
        compute_gst_table(heads, n=2)
    with pytest.raises(ValueError, match="limits"):
        compute_gst_table(heads, limit=1.0)
    with pytest.raises(TypeError, match="heads must be"):
        gst_panels(["adaface"])
    bad = tmp_path / "params.yaml"
    bad.write_text("heads:\n  cosface: {m: -1}\n")
    assert gst_stage.main(["--params", str(bad), "--out", str(tmp_path / "gst")]) == 2
    err = capsys.readouterr().err
    assert "heads.cosface.m" in err and not (tmp_path / "gst").exists()


def test_failed_write_leaves_previous_output(tmp_path, monkeypatch):
    import marginlab.analysis.gst_figures as gf

    out = tmp_path / "gst"
    out.mkdir()
    (out / "gst.parquet").write_text("previous")
    write_marker(out)
    monkeypatch.setattr(gf, "plot_gst_curves", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    heads = load_params(ROOT / "params.yaml").heads
    with pytest.raises(RuntimeError, match="disk full"):
        write_gst_outputs(heads, out, n=11, curve_n=21)
    assert (out / "gst.parquet").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gst"]  # no temporary directory left behind


def test_grid_settings_come_from_params_gst(tmp_path):
    """params.gst sets the grid; the CLI flags override it for one run; every params file carries the section."""
    from marginlab.core.config import ConfigError, GstConfig

    from pipeline_helpers import preset

    from marginlab.core.config import validate_params

    for path in [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]:
        raw = yaml.safe_load(path.read_text()) if path.name == "params.yaml" else preset(path.stem)
        assert raw["gst"] == GstConfig().model_dump(), path.name
        assert validate_params(raw).gst == GstConfig()
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


def test_magface_panels_follow_its_configured_magnitude_range():
    """MagFace's GST states are l_a, the middle and u_a of *its* params, not fixed numbers."""
    from marginlab.analysis.gst_study import gst_panels
    from marginlab.core.config import Params

    heads = Params().heads.model_copy(deep=True)
    heads.magface = type(heads.magface)(l_a=20.0, u_a=100.0)
    norms = [p.variant["norm"] for p in gst_panels(heads) if p.head == "magface" and "norm" in p.variant]
    assert norms[:3] == [20.0, 60.0, 100.0]
