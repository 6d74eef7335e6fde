"""Verdicts "at this scale" (images seen against the paper's), the scale banner for every data source, the ẑ table
of :mod:`marginlab.analysis.zhat` against numpy, and the report's "Did the margin adapt?" section."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_report import CLAIMS, FIXTURE_IMAGES_SEEN, build_report_tree

from marginlab.analysis import images_seen as ims
from marginlab.analysis.paper_numbers import PAPER_IMAGES_SEEN
from marginlab.analysis.zhat import (
    ZHAT_COLUMNS,
    final_ranges,
    runs_without_zhat,
    zhat_stats,
    zhat_table,
)
from marginlab.report.render import run_report

#: The qualifier of the fixture: 576 images seen; 5.8 M × 26 / 576 = 261,806 ≈ 2.6×10⁵.
QUALIFIER = "at this scale: 576 images seen, 2.6×10⁵× fewer than the paper"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return build_report_tree(tmp_path_factory.mktemp("at_scale") / "study", gst=False)


@pytest.fixture(scope="module")
def html(tree) -> str:
    return run_report(tree).read_text(encoding="utf-8")


def _text(fragment: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).replace("&#39;", "'").split())


def _copy(tree: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "study"
    shutil.copytree(tree, dest, ignore=shutil.ignore_patterns("reports"))
    return dest


# --------------------------------------------------------------------------- images seen
def test_images_seen_and_ratio_by_hand():
    assert PAPER_IMAGES_SEEN == 5_800_000 * 26
    assert ims.run_images_seen({"global_steps": 108, "batch_size": 128}) == 13_824
    assert ims.run_images_seen({"global_steps": 108}) is None and ims.run_images_seen(None) is None
    summaries = {"a": {"global_steps": 10, "batch_size": 32}, "b": {"global_steps": 30, "batch_size": 32}, "c": {}}
    assert ims.reference_images_seen(summaries, ["a", "b", "c", "absent"]) == 640  # median of 320 and 960
    assert ims.reference_images_seen(summaries, ["c"]) is None
    assert ims.paper_ratio(13_824) == pytest.approx(150_800_000 / 13_824)
    # the audit's example: the default run, 13.8 k images, ~1.1×10⁴ times fewer than the paper
    assert ims.at_scale(13_824) == "at this scale: 1.4×10⁴ images seen, 1.1×10⁴× fewer than the paper"
    assert ims.sci(114_000) == "1.1×10⁵" and ims.sci(576) == "576" and ims.sci(2.6) == "2.6"
    assert "unknown" in ims.at_scale(None)
    keys = ims.summary_keys(13_824)
    assert keys == {"images_seen_reference": 13_824, "paper_images_seen": 150_800_000,
                    "paper_images_seen_ratio": round(150_800_000 / 13_824, 3)}
    assert ims.summary_keys(None) == {}


def test_fixture_qualifier_is_the_computed_ratio():
    ratio = PAPER_IMAGES_SEEN / FIXTURE_IMAGES_SEEN
    assert FIXTURE_IMAGES_SEEN == 576 and 2.55e5 <= ratio < 2.65e5  # so "2.6×10⁵" in QUALIFIER
    assert ims.at_scale(FIXTURE_IMAGES_SEEN) == QUALIFIER


# --------------------------------------------------------------------------- badges
def test_every_part_badge_reads_at_this_scale_with_the_ratio(html):
    summary = html[html.index('id="claims-summary"'):html.index("</table>", html.index('id="claims-summary"'))]
    for claim in CLAIMS["claims"]:
        row = summary[summary.index(f'data-claim="{claim["id"]}"'):]
        row = row[:row.index("</tr>")]
        for part in claim["parts"]:
            name = part["name"].replace("'", "&#39;")
            cell = row[row.index(">", row.index(f'data-part="{name}"')) + 1:]
            cell = _text(cell[:cell.index("</div>")])
            assert cell == f"{part['verdict']} {QUALIFIER} {part['name']}", cell
        # the combined verdict is secondary text, not a badge
        combined = row[row.index('class="combined"'):]
        assert 'class="badge' not in combined.split("</td>")[0]
    # the detailed sections: one qualified badge per part, no headline badge of the combined verdict
    for claim in CLAIMS["claims"]:
        start = html.index(f'id="claim-{claim["id"]}"')
        section = html[start:html.index('<div class="claim"', start + 1) if claim is not CLAIMS["claims"][-1]
                       else html.index("</section>", start)]
        assert section.count(QUALIFIER) == len(claim["parts"])
        head = section[section.index('class="claim-head"'):]
        assert f"combined verdict: {claim['verdict']}" in _text(head[:head.index("</div>")])
        assert 'class="badge' not in head[:head.index("</div>")]
    assert "parts, at this scale" in _text(html)


def test_claim_without_parts_gets_one_qualified_badge(tree, tmp_path):
    root = _copy(tree, tmp_path)
    claims = json.loads((root / "analysis" / "claims.json").read_text())
    claims["claims"][1].pop("parts")
    (root / "analysis" / "claims.json").write_text(json.dumps(claims))
    html = run_report(root).read_text()
    row = html[html.index('data-claim="2"'):]
    row = _text(row[:row.index("</tr>")])
    assert f"not supported {QUALIFIER}" in row


def test_claim_one_shows_its_whole_curve_beside_the_early_part(html):
    start = html.index('id="claim-1"')
    section = html[start:html.index('id="claim-2"')]
    part_b = section[section.index("b: early = end of epoch 1"):]
    assert 'alt="correlation_vs_progress.png (claim 1)"' in part_b
    assert 'id="ev-1-2-curve"' in part_b  # the per-probe list as a small table
    table = part_b[part_b.index('id="ev-1-2-curve"'):part_b.index("</table>")]
    assert [_text(r) for r in re.findall(r"<tr>(.*?)</tr>", table, flags=re.DOTALL)] == [
        "progress step spearman", "1 0 0 0.01", "2 0.3333 6 0.1234", "3 1 18 0.7123"]
    # only once in claim 1 (part a has no figure)
    assert section.count("correlation_vs_progress.png (claim 1)") == 1


# --------------------------------------------------------------------------- banner
def test_banner_names_model_input_data_epochs_and_ratio(html):
    start = html.index('id="scale-banner"')
    banner = _text(html[start:html.index("</div>", start)])
    assert "Scale: synthetic data, small models" in banner
    for fragment in ("IR-18 at 112×112", "synthetic faces (200 images of 25 identities)", "3 epochs",
                     "576 training images seen by the reference runs, 2.6×10⁵× fewer than the paper's 1.5×10⁸",
                     "MS1MV2's 5.8 M images × 26 epochs", "at this scale only"):
        assert fragment in banner, fragment


@pytest.mark.parametrize("source, extra", [("folders", {"train_folders": "data/casia"}),
                                           ("recordio", {"train_rec": "data/faces_emore/train.rec"})])
def test_banner_for_real_data_sources(tree, tmp_path, source, extra):
    root = _copy(tree, tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"].update({"source": source, "name": "realfaces", **extra})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    html = run_report(root).read_text()
    start = html.index('id="scale-banner"')
    banner = _text(html[start:html.index("</div>", start)])
    assert "Scale: small models, short training" in banner
    assert f"realfaces ({source}" in banner and "IR-18 at 112×112" in banner and "3 epochs" in banner
    assert "2.6×10⁵× fewer than the paper's" in banner


def test_ratio_falls_back_to_the_analysis_summary(tree, tmp_path):
    root = _copy(tree, tmp_path)
    for run in ("adaface-s0", "adaface-s1"):
        (root / "runs" / run / "train_summary.json").unlink()
    (root / "analysis" / "summary.json").write_text(json.dumps({"images_seen_reference": 13_824}))
    html = run_report(root).read_text()
    assert "at this scale: 1.4×10⁴ images seen, 1.1×10⁴× fewer than the paper" in html
    (root / "analysis" / "summary.json").write_text(json.dumps({}))
    html = run_report(root).read_text()
    assert "at this scale (images seen unknown" in html


# --------------------------------------------------------------------------- ẑ table
def _probe(values: dict[tuple[str, int, str], np.ndarray]) -> pd.DataFrame:
    frames = []
    for (run, epoch, pass_), z in values.items():
        frames.append(pd.DataFrame({"run": run, "label": run.rsplit("-s", 1)[0], "head": run.split("-")[0], "epoch": epoch,
                                    "pass": pass_, "norm": 10.0, "z_hat": np.asarray(z, dtype=np.float32)}))
    out = pd.concat(frames, ignore_index=True)
    out["pass"] = out["pass"].astype("category")
    return out


def test_zhat_table_math_against_numpy():
    rng = np.random.default_rng(3)
    z1 = np.clip(rng.normal(0.1, 0.6, 101), -1, 1).astype(np.float32)
    z1[:3] = np.nan  # NaN images are not counted
    z2 = rng.uniform(-0.05, 0.05, 40).astype(np.float32)
    aug = np.clip(rng.normal(-0.3, 0.8, 50), -1, 1).astype(np.float32)
    probe = _probe({("adaface-s0", 0, "clean"): z2, ("adaface-s0", 2, "clean"): z1, ("adaface-s0", 2, "augmented"): aug,
                    ("cosface-s0", 2, "clean"): np.full(30, np.nan)})  # no running statistics: left out
    summaries = {"adaface-s0": {"global_steps": 36, "epochs": 2, "batch_size": 32}}
    table = zhat_table(probe, None, summaries)
    assert list(table.columns) == ZHAT_COLUMNS
    assert set(table["run"]) == {"adaface-s0"} and len(table) == 3
    for (epoch, pass_), z in (((2, "clean"), z1), ((2, "augmented"), aug), ((0, "clean"), z2)):
        row = table[(table["epoch"] == epoch) & (table["pass"] == pass_)].iloc[0]
        finite = z[np.isfinite(z)].astype(np.float64)
        assert row["n"] == finite.size
        assert row["mean"] == pytest.approx(finite.mean()) and row["std"] == pytest.approx(finite.std(ddof=1))
        for q, col in zip((5, 25, 50, 75, 95), ("q05", "q25", "q50", "q75", "q95")):
            assert row[col] == pytest.approx(np.percentile(finite, q)), col
        assert row["share_clip_low"] == pytest.approx(np.mean(finite == -1.0))
        assert row["share_clip_high"] == pytest.approx(np.mean(finite == 1.0))
        assert row["schedule"] == "epoch"
        assert row["step"] == 18 * epoch and row["images_seen"] == 18 * 32 * epoch and row["progress"] == epoch / 2
    clipped = table[(table["epoch"] == 2) & (table["pass"] == "clean")].iloc[0]
    assert clipped["share_clip_low"] > 0 and clipped["share_clip_high"] > 0  # the hand-made values reach the clip


def test_zhat_stats_edge_cases():
    assert zhat_stats([np.nan, np.nan])["n"] == 0
    one = zhat_stats([0.25])
    assert one["n"] == 1 and one["q05"] == one["q95"] == 0.25 and np.isnan(one["std"])
    half = zhat_stats([-1.0, -1.0, 1.0, 0.0])
    assert half["share_clip_low"] == 0.5 and half["share_clip_high"] == 0.25


def test_zhat_progress_probes_and_tables_without_the_column():
    probe = _probe({("adaface-s0", 1, "clean"): np.linspace(-0.2, 0.2, 21)})
    old = probe.drop(columns="z_hat")  # written before the column existed
    progress = probe.assign(step=7, images_seen=7 * 32, progress=7 / 18)
    table = zhat_table(old, progress, {})
    assert len(table) == 1 and table["schedule"].iloc[0] == "progress"
    assert table["step"].iloc[0] == 7 and table["progress"].iloc[0] == pytest.approx(7 / 18)
    assert table["q50"].iloc[0] == pytest.approx(0.0, abs=1e-7)
    # without summaries, epoch rows are placed at epoch / last probed epoch
    table = zhat_table(_probe({("adaface-s0", 1, "clean"): [0.1, 0.2], ("adaface-s0", 4, "clean"): [0.3, 0.4]}))
    assert list(table["progress"]) == [0.25, 1.0] and table["step"].isna().all()
    empty = zhat_table(old, None, {})
    assert empty.empty and list(empty.columns) == ZHAT_COLUMNS
    runs = pd.DataFrame({"run": ["adaface-s0", "adaface-s1", "cosface-s0"], "head": ["adaface", "adaface", "cosface"]})
    assert runs_without_zhat(runs, table) == ["adaface-s1"]
    assert runs_without_zhat(runs, empty) == ["adaface-s0", "adaface-s1"]


def test_final_ranges_average_the_seeds_at_the_last_epoch():
    probe = _probe({("adaface-s0", 1, "clean"): np.linspace(-0.9, 0.9, 101), ("adaface-s0", 3, "clean"): np.linspace(-0.1, 0.1, 101),
                    ("adaface-s1", 3, "clean"): np.linspace(-0.3, 0.1, 101), ("adaface-s1", 3, "augmented"): np.linspace(-1, 1, 11)})
    ranges = final_ranges(zhat_table(probe))
    assert len(ranges) == 1
    r = ranges.iloc[0]
    assert r["label"] == "adaface" and r["runs"] == 2 and r["epoch"] == 3
    assert r["q05"] == pytest.approx((np.percentile(np.linspace(-0.1, 0.1, 101), 5) + np.percentile(np.linspace(-0.3, 0.1, 101), 5)) / 2)
    assert r["q95"] == pytest.approx((0.09 + np.percentile(np.linspace(-0.3, 0.1, 101), 95)) / 2)
    assert r["q05_min"] == pytest.approx(np.percentile(np.linspace(-0.3, 0.1, 101), 5))


def test_zhat_figure_draws_and_says_no_data(tmp_path):
    from marginlab.analysis.figures import zhat_by_progress

    probe = _probe({("adaface-s0", e, "clean"): np.linspace(-0.1 * e, 0.1 * e, 21) for e in range(3)})
    runs = pd.DataFrame({"run": ["adaface-s0"], "label": ["adaface"], "head": ["adaface"], "seed": [0]})
    path = zhat_by_progress(zhat_table(probe), runs, ["adaface"], tmp_path / "z.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    empty = zhat_by_progress(pd.DataFrame(columns=ZHAT_COLUMNS), runs, ["adaface"], tmp_path / "none.png")
    assert empty.read_bytes().startswith(b"\x89PNG")


# --------------------------------------------------------------------------- the report section
def test_zhat_section_table_and_sentence(html, tree):
    start = html.index('<section id="zhat">')
    section = html[start:html.index("</section>", start)]
    text = _text(section)
    assert 'alt="zhat_by_progress.png"' in section
    ranges = final_ranges(pd.read_csv(tree / "analysis" / "zhat.csv"))
    ref = ranges[ranges["label"] == "adaface"].iloc[0]

    def signed(x):
        return f"{x:+.2f}".replace("-", "−")

    assert (f"ẑ spans [{signed(ref['q05'])}, {signed(ref['q95'])}] at the final epoch (adaface, epoch 3" in text)
    assert "the margin moves between CosFace (ẑ=0) and ArcFace (ẑ=−1)/negative margin (ẑ=+1) by at most" in text
    rows = re.findall(r'<tr data-label="([^"]+)">(.*?)</tr>', section, flags=re.DOTALL)
    assert rows[0][0] == "adaface"  # the reference first
    assert {label for label, _ in rows} == set(ranges["label"])
    for label, cells in rows:
        r = ranges[ranges["label"] == label].iloc[0]
        assert f"[{signed(r['q05'])}, {signed(r['q95'])}]" in _text(cells)
    assert "not recorded by this run's training code" not in text  # every AdaFace run of the fixture has ẑ


def test_report_when_no_run_recorded_zhat(tree, tmp_path):
    root = _copy(tree, tmp_path)
    pd.DataFrame(columns=ZHAT_COLUMNS).to_csv(root / "analysis" / "zhat.csv", index=False)
    html = run_report(root).read_text()
    start = html.index('<section id="zhat">')
    text = _text(html[start:html.index("</section>", start)])
    assert "not available: zhat.csv has no rows: ẑ not recorded by this run's training code" in text
    assert 'id="zhat-ranges"' not in html and "ẑ spans" not in text
    for run in ("adaface-s0", "adaface-s1", "adaface-h022-s0", "adaface-brisque-s0"):
        assert f"{run}: ẑ not recorded by this run's training code" in text
    assert "cosface-s0:" not in text
    # an analysis older than the ẑ table
    (root / "analysis" / "zhat.csv").unlink()
    html = run_report(root).read_text()
    start = html.index('<section id="zhat">')
    assert "zhat.csv not found (written by the 'analyze' stage" in _text(html[start:html.index("</section>", start)])


def test_some_runs_without_zhat_are_named(tree, tmp_path):
    root = _copy(tree, tmp_path)
    table = pd.read_csv(root / "analysis" / "zhat.csv")
    table[table["run"] != "adaface-m05-s0"].to_csv(root / "analysis" / "zhat.csv", index=False)
    html = run_report(root).read_text()
    start = html.index('<section id="zhat">')
    text = _text(html[start:html.index("</section>", start)])
    assert "adaface-m05-s0: ẑ not recorded by this run's training code" in text
    assert 'data-label="adaface-m05"' not in html[start:] and "ẑ spans" in text
