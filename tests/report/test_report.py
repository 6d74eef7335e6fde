"""The HTML report: self-contained, every section present, numbers equal to the stage outputs, missing inputs
shown as notes, required inputs as clear errors, a real browser renders a non-blank page."""

from __future__ import annotations

import os
import base64
import json
import math
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_report import (
    ABLATION,
    ANALYSIS_FIGURES,
    CLAIMS,
    COMPARISON,
    FIXTURE_IMAGES_SEEN,
    build_report_tree,
)

from marginlab.report.inputs import ReportInputError
from pipeline_helpers import stage_command
from marginlab.report.provenance import dvc_lock_inputs, summarize_wall_times
from marginlab.report.render import (
    fmt_mean_std,
    fmt_p,
    fmt_seconds,
    fmt_value,
    run_report,
)

ROOT = Path(__file__).resolve().parents[2]
report_stage = stage_command("report")


# --------------------------------------------------------------------------- HTML parsing
class Page(HTMLParser):
    """Collects tags (with attributes), tables by id (rows of (attrs, [cell texts], [cell attrs])), text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.tables: dict[str, list[tuple[dict, list[str], list[dict]]]] = {}
        self.text: list[str] = []
        self._table: str | None = None
        self._row = None
        self._cell: list[str] | None = None
        self._cell_attrs: dict = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table":
            self._table = attrs.get("id") or f"_anon{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = (attrs, [], [])
            self.tables[self._table].append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell, self._cell_attrs = [], attrs
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row[1].append(" ".join("".join(self._cell).split()))
            self._row[2].append(self._cell_attrs)
            self._cell = None
        elif tag == "table":
            self._table, self._row = None, None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, table: str, **attrs) -> list[tuple[dict, list[str], list[dict]]]:
        return [r for r in self.tables[table] if all(r[0].get(k) == v for k, v in attrs.items())]

    def full_text(self) -> str:
        return " ".join(" ".join(self.text).split())


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return build_report_tree(tmp_path_factory.mktemp("report") / "study")


@pytest.fixture(scope="module")
def html(tree) -> str:
    out = run_report(tree)
    assert out == tree / "reports" / "report.html"
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(html) -> Page:
    return Page(html)


def copy_tree(tree: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "study"
    shutil.copytree(tree, dest, ignore=shutil.ignore_patterns("reports"))
    return dest


# --------------------------------------------------------------------------- self-contained
def test_self_contained(html, page):
    for tag, attrs in page.tags:
        for key in ("src", "href", "srcset", "action", "data", "poster"):
            value = attrs.get(key)
            if value is None:
                continue
            assert not value.lower().startswith(("http://", "https://", "//", "file:")), (tag, key, value[:80])
            if key == "href":
                assert value.startswith("#"), value  # only in-page anchors
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
    assert "http://" not in html and "https://" not in html
    style = html[html.index("<style>"): html.index("</style>")]
    assert "url(" not in style and "@import" not in style and "@font-face" not in style


def test_every_figure_embedded_as_png(page, tree):
    imgs = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    # analysis figures (incl. training curves and ẑ) + claim 1's curve again + the scale figure + 3 gst figures
    # + samples.png + quality histograms
    assert len(imgs) == len(ANALYSIS_FIGURES) + 1 + 1 + 3 + 1 + 1
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in imgs}
    for name in ANALYSIS_FIGURES:
        assert (tree / "analysis" / "figures" / name).read_bytes() in embedded, name
    for png in (tree / "analysis" / "gst" / "figures").glob("*.png"):
        assert png.read_bytes() in embedded
    assert (tree / "prepared" / "samples.png").read_bytes() in embedded


def test_sections_and_banner(page):
    ids = {attrs.get("id") for _, attrs in page.tags}
    for section in ("claims", "table1", "comparison", "fig2", "fig3", "training", "data", "provenance", "scale-banner"):
        assert section in ids, section
    text = page.full_text()
    assert "Scale: synthetic data, small models" in text and "not from an IR-100 trained on MS1MV2" in text
    # the fixture is complete: the only note is about git (the fixture tree is not a repository)
    notes = [t for t in text.split("not available: ")[1:]]
    assert len(notes) == 1 and "is not a git repository" in notes[0]


# --------------------------------------------------------------------------- numbers
def test_claims_badges_and_escaping(page, html):
    rows = page.rows("claims-summary")
    assert [r[0].get("data-claim") for r in rows[1:]] == [str(c["id"]) for c in CLAIMS["claims"]]
    for row, claim in zip(rows[1:], CLAIMS["claims"]):
        assert row[1][4].startswith(claim["verdict"] + " ")  # the combined verdict: secondary text, last column
    verdicts = {a["id"]: a["data-verdict"] for t, a in page.tags if t == "div" and a.get("id", "").startswith("claim-")}
    assert verdicts == {f"claim-{c['id']}": c["verdict"] for c in CLAIMS["claims"]}
    text = page.full_text()
    assert "final_spearman_mean 0.7246" in text
    # nested evidence is a table: one row per run, one column per number (claim 1, part 1)
    runs = page.tables["ev-1-1-runs"]
    assert runs[0][1] == ["", "spearman", "spearman_ci"]
    assert runs[1][1] == ["adaface-s0", "0.7123", "[0.65, 0.77]"]
    # the tally counts parts: claim 1 a supported, b inconclusive; 2 a not supported; 3 h inconclusive
    assert "1 supported 1 not supported 2 inconclusive parts, at this scale" in text
    # autoescape: the statement's markup is text, not HTML
    assert "AdaFace emphasises &lt;b&gt;hard&lt;/b&gt; samples" in html and "<b>hard</b>" not in html
    assert "8 more numbers" in text  # 20 numbers: 12 shown, the rest folded


def test_claims_say_how_far_each_verdict_is_from_its_threshold(page):
    rows = {r[0]["data-claim"]: r[1] for r in page.rows("claims-summary")[1:]}
    # one line per part (claim 1's part b, and the parts of 2 and 3, have no decision of their own)
    assert rows["1"][3] == "0.62 SE past the threshold borderline —"
    assert rows["2"][3] == "—" and rows["3"][3] == "—"
    # the combined verdict's distance, as secondary text beside it
    assert rows["1"][4] == "supported 0.62 SE past the threshold (borderline)"
    assert rows["2"][4] == "not supported exact (no sampling noise)"
    assert rows["3"][4] == "inconclusive 1.4 SE short of the nearer decisive verdict"
    text = page.full_text()
    assert "within one standard error of its threshold" in text  # claim 1's robustness line
    assert text.count("within one standard error of its threshold") == 1  # only the borderline claim says so


def test_comparison_table_matches_csv(page):
    table = page.tables["comparison-table"]
    for label, g in COMPARISON.groupby("label"):
        rows = page.rows("comparison-table", **{"data-label": label})
        assert len(rows) == len(g), label  # one row per protocol of that label
        for (attrs, cells, _), r in zip(rows, g.itertuples(index=False)):
            assert attrs["data-protocol"] == r.protocol
            ours = f"{r.mean:.2f} ± {r.std:.2f}" if not math.isnan(r.std) else f"{r.mean:.2f}"
            assert cells[2] == ours
            assert cells[3] == str(r.n_seeds)
            assert cells[4] == f"{r.delta_vs_adaface:+.2f}"
            assert cells[5] == ("—" if math.isnan(r.ci_lo) else f"[{r.ci_lo:+.2f}, {r.ci_hi:+.2f}]")
            assert cells[6] == ("—" if math.isnan(r.p_value) else f"{r.p_value:.3g}")
            assert cells[8] == ("—" if math.isnan(r.paper_value) else f"{r.paper_value:.2f}")
            assert cells[9] == (r.paper_setting if isinstance(r.paper_setting, str) else "")
    groups = [cells[0] for attrs, cells, _ in table if attrs.get("class") == "group"]
    assert groups == list(dict.fromkeys(COMPARISON["protocol"]))
    # spot checks by hand
    ada = page.rows("comparison-table", **{"data-label": "adaface", "data-protocol": "verification/lq"})[0][1]
    assert ada[2] == "81.95 ± 0.91" and ada[7] == "reference"
    cur = page.rows("comparison-table", **{"data-label": "curricularface", "data-protocol": "identification/tinyface rank1"})[0][1]
    assert cur[2] == "55.78" and cur[8] == "63.68" and cur[5] == "—"


def test_scale_difference_stated_next_to_the_paper(page):
    text = page.full_text()
    assert "ours IR-18 at 112×112 on synthetic faces (200 images of 25 identities), 3 epochs, batch 128" in text
    assert "paper R100 (IR-100) at 112×112 on MS1MV2 (5.8 M images, 85,742 identities), 26 epochs" in text


def test_ablation_tables_match_csv(page):
    for factor, g in ABLATION.groupby("factor"):
        table = page.tables[f"ablation-{factor}"]
        sets = list(dict.fromkeys(g["set"]))
        assert table[0][1][3:] == sets
        for (setting, label), r in g.groupby(["setting", "label"], sort=False):
            rows = page.rows(f"ablation-{factor}", **{"data-label": label, "data-setting": setting})
            assert len(rows) == 1
            cells = rows[0][1]
            assert cells[2] == str(int(r["n_seeds"].max()))
            for k, s in enumerate(sets):
                hit = r[r["set"] == s]
                want = "—" if hit.empty else fmt_mean_std(hit["mean"].iloc[0], hit["std"].iloc[0])
                assert cells[3 + k] == want
            assert ("(reference)" in cells[0]) == bool(r["is_reference"].any())
    assert page.rows("ablation-h", **{"data-label": "adaface-h022"})[0][1][3] == "79.76"
    assert page.rows("ablation-h", **{"data-label": "adaface"})[0][1][3] == "81.95 ± 0.91"


def test_correlations_and_augmentation_match_csv(page, tree):
    corr = pd.read_csv(tree / "analysis" / "correlation.csv")
    clean = corr[(corr["pass"] == "clean") & (corr["epoch"] == corr.groupby("run")["epoch"].transform("max"))]
    rows = page.tables["correlations"][1:]
    assert sorted(r[0]["data-run"] for r in rows) == sorted(clean["run"].unique())
    for attrs, cells, cell_attrs in rows:
        for text, ca in zip(cells[4:], cell_attrs[4:]):
            hit = clean[(clean["run"] == attrs["data-run"]) & (clean["quantity"] == ca["data-quantity"])
                        & (clean["target"] == ca["data-target"])].iloc[0]
            assert text == (f"ρ {hit.spearman:.3f} [{hit.spearman_lo:.3f}, {hit.spearman_hi:.3f}] "
                            f"r {hit.pearson:.3f} [{hit.pearson_lo:.3f}, {hit.pearson_hi:.3f}]")
    aug = pd.read_csv(tree / "analysis" / "augmentation.csv")
    for attrs, cells, _ in page.tables["augmentation"][2:]:
        g = aug[aug["run"] == attrs["data-run"]].sort_values("norm_bin")
        assert cells[4] == f"{g['share_any'].iloc[0]:.3f}" and cells[8] == f"{g['share_any'].iloc[-1]:.3f}"


def test_gst_tables_match_summary(page, tree):
    s = json.loads((tree / "analysis" / "gst" / "summary.json").read_text())
    rows = page.tables["gst-emphasis"][1:]
    # in the figure's panel order (every registered head in table order; none listed by the report)
    assert [r[0]["data-panel"] for r in rows] == [p["key"] for p in s["panels"]]
    assert sorted(s["emphasis"]["panels"]) == sorted(p["key"] for p in s["panels"])
    assert "elasticface" in s["emphasis"]["panels"]
    for attrs, cells, _ in rows:
        v = s["emphasis"]["panels"][attrs["data-panel"]]
        assert cells[1:] == [f"{v['easy_abs_gst']:.2f}", f"{v['hard_abs_gst']:.2f}", f"{v['hard_over_easy']:.2f}"]
    flat = page.tables["gst-flat"][1:]
    assert [r[1][0] for r in flat] == ["0.40", "0.50", "0.70"]


def test_quality_and_data_tables(page, tree):
    q = json.loads((tree / "quality" / "summary.json").read_text())
    for attrs, cells, _ in page.tables["quality-splits"][1:]:
        s = q["splits"][attrs["data-split"]]
        assert cells[1] == str(s["count"])
        assert cells[4] == f"{s['brisque']['mean']:.1f} ± {s['brisque']['std']:.1f}"
        assert cells[6] == fmt_value((s.get("ground_truth") or {}).get("spearman_iq_gt"), 3)
    by = q["splits"]["all"]["ground_truth"]["by_degradation"]
    rows = {r[0]["data-type"]: r[1] for r in page.tables["by-degradation"][1:]}
    for t, v in by.items():
        assert rows[t][1] == str(v["n"]) and rows[t][3] == fmt_value(v["spearman_iq_gt"], 3)
    assert rows["blur"][1] != "0"  # the fixture has blurred images
    manifest = dict(r[1] for r in page.tables["manifest"])
    assert manifest["training images"] == "200" and manifest["training identities"] == "25"


def test_alignment_fact_none_and_detect(page):
    """The data table says what prepare did to the faces: 'none' for aligned sets (the fixture), and for
    data.align: detect the counts of the manifest entry that prepare's own summarise() writes."""
    from marginlab.data.prepare.ingest_aligned import summarise
    from marginlab.report.render import alignment_fact

    manifest = dict(r[1] for r in page.tables["manifest"])
    assert manifest["face alignment"].startswith("none: images used as given")
    assert alignment_fact({"mode": "none"}) == alignment_fact(None)  # a manifest older than the entry
    frame = pd.DataFrame({  # 5 training photos, 4 verification photos
        "set": ["train"] * 5 + ["val:mine"] * 4,
        "status": ["ok", "ok", "no_face", "low_score", "corrupt", "ok", "ok", "ok", "center_crop"],
        "kept": [True, True, False, False, False, True, True, True, True],
        "faces_above_min_score": [1, 2, 0, 0, 0, 1, 1, 1, 0],
    })
    entry = {**summarise(frame), "mode": "detect",
             "settings": {"min_score": 0.9, "no_face": "skip", "multiple_faces": "largest", "threads": 0}}
    text = alignment_fact(entry)
    # 6 of 9 kept; 8 decodable, 5 with a face above min_score -> 62.5 %
    assert text.startswith("detect: kept 6 of 9 images (a face above min_score in 62.5 %)")
    assert "train: 2/5 [ok 2, no_face 1, low_score 1, corrupt 1]" in text
    assert "val:mine: 4/4 [ok 3, center_crop 1]" in text
    assert "policy: min_score 0.9, no_face skip, multiple_faces largest" in text and "threads" not in text
    assert text.endswith("per image: alignment.parquet")


def test_runs_and_provenance(page, tree):
    params = yaml.safe_load((tree / "params.yaml").read_text())
    assert [r[0]["data-run"] for r in page.tables["runs"][1:]] == list(params["runs"])
    text = page.full_text()
    walls = {r[1][0]: r[1][1] for r in page.tables["wall-times"][1:]}
    assert walls["quality"] == "33.5 s" and walls["analyze"] == "41.0 s" and walls["prepare"] == "not recorded"
    assert walls[f"train ({len(params['runs'])} runs)"] == fmt_seconds(12.0 * len(params["runs"]))
    assert walls[f"evaluate ({len(params['runs'])} runs)"] == fmt_seconds(7.5 * len(params["runs"]))
    packages = {r[1][0]: r[1][1] for r in page.tables["packages"][1:]}
    import torch

    assert packages["torch"] == torch.__version__.split("+")[0] or packages["torch"] == torch.__version__
    for name in ("pyiqa", "dvc", "snakemake", "timm", "numpy"):
        assert packages[name] not in ("", "not installed"), name
    lock = {(r[1][1], r[1][2]) for r in page.tables["dvc-lock"][1:]}
    assert ("data", "0123456789abcdef0123456789abcdef.dir") in lock
    assert ("stages/gst.py", "99998888777766665555444433332222") in lock
    assert "preset default" in text and "git: not available" in text


# --------------------------------------------------------------------------- missing and bad inputs
def test_missing_optional_inputs_become_notes(tree, tmp_path):
    root = copy_tree(tree, tmp_path)
    shutil.rmtree(root / "analysis" / "gst")
    (root / "analysis" / "ablation.csv").unlink()
    (root / "analysis" / "figures" / "training_curves.png").unlink()
    shutil.rmtree(root / "runs" / "cosface-s1" / "probe")
    (root / "runs" / "cosface-s0" / "metrics.json").unlink()
    (root / "quality" / "summary.json").unlink()
    (root / "prepared" / "samples.png").unlink()
    (root / "dvc.lock").unlink()
    for name in ("scale.csv", "scale_fit.json", "figures/scale_vs_images_seen.png"):  # an analysis older than the scale study
        (root / "analysis" / name).unlink()
    page = Page(run_report(root).read_text())
    text = page.full_text()
    for fragment in ("ablation.csv not found (written by the 'analyze' stage",
                     "scale.csv not found (written by the 'analyze' stage", "scale_fit.json not found",
                     "no scale_vs_images_seen.png in",
                     "cosface-s1: not available: ", "probe not found (written by the 'train@cosface-s1' stage)",
                     "metrics.json not found (written by the 'evaluate@cosface-s0' stage)",
                     "summary.json not found (written by the 'quality' stage)",
                     "samples.png not found (written by the 'prepare' stage)",
                     "dvc.lock not found", "(written by the 'gst' stage"):
        assert fragment in text, fragment
    # training curves fall back to the runs' live/ logs
    imgs = [a["src"] for t, a in page.tags if t == "img"]
    # analysis figures without training + claim 1's curve again + fallback curves
    assert len(imgs) == (len(ANALYSIS_FIGURES) - 1) + 1 + 1
    assert "from the runs' live/ logs" in text


def test_released_models_section(tree, tmp_path):
    """A measured released model shows its numbers with the set each was measured on; one not measured yet names
    the command; without any entry the section says how to add one."""
    assert "no released model is configured" in Page(run_report(copy_tree(tree, tmp_path / "a")).read_text()).full_text()
    root = copy_tree(tree, tmp_path / "b")
    params = yaml.safe_load((root / "params.yaml").read_text())
    entry = {"file": "ckpt/adaface_ir18_casia.ckpt", "format": "adaface", "trained_on": "CASIA-WebFace",
             "images_seen": 13_000_000}
    params["released"] = {"ir18": entry, "later": {**entry, "format": "insightface"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    metrics = {"model": {"sha256": "0123456789abcdef", "arch": "ir_18", "own_data": False},
               "verification": {"hq": {"accuracy_mean": 0.9876}}, "ijb": {}, "identification": {"tinyface": {"rank1": 0.5}},
               "correlation": [{"set": "train-sample", "target": "iq", "spearman": 0.4123, "spearman_lo": 0.3, "spearman_hi": 0.5,
                                "pearson": 0.39, "pearson_lo": 0.28, "pearson_hi": 0.49, "n": 1000, "bootstrap": "identity"}],
               "augmentation": [{"augmentation": "crop", "n": 120, "mean_log_ratio": -0.2, "mean_log_ratio_lo": -0.25,
                                 "mean_log_ratio_hi": -0.15, "median_ratio": 0.8, "bootstrap": "identity"}]}
    (root / "released" / "ir18").mkdir(parents=True)
    (root / "released" / "ir18" / "metrics.json").write_text(json.dumps(metrics))
    page = Page(run_report(root).read_text())
    text = page.full_text()
    (_, cells, _), = page.tables["released-ir18-correlations"][1:]
    assert cells[0].startswith("training-set sample of") and "not the model's training data" in cells[0]
    assert cells[2:5] == ["0.412 [0.300, 0.500]", "0.390 [0.280, 0.490]", "1000"]
    (_, cells, _), = page.tables["released-ir18-augmentation"][1:]
    assert cells == ["crop", "120", "-0.200 [-0.250, -0.150]", "0.800", "identity"]
    protocols = [row[1] for row in page.tables["released-ir18-protocols"][1:]]
    assert protocols == [["hq", "10-fold accuracy (%)", "98.76"], ["tinyface", "rank-1 (%)", "50.00"]]
    assert "CASIA-WebFace" in text and "1.3×10⁷" in text and "0123456789ab" in text
    assert "dvc repro released@later" in text
    assert ("Feature norm vs IQ on a training-set sample (not its training data, so out of distribution for this "
            "model): Spearman 0.412 [0.300, 0.500] (n = 1000, identity bootstrap); the paper reports 0.52") in text


def test_real_data_without_ijb(tree, tmp_path):
    root = copy_tree(tree, tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"].update({"source": "folders", "name": "casia", "train_folders": "data/casia"})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    comp = pd.read_csv(root / "analysis" / "comparison.csv")
    comp[~comp["protocol"].str.startswith("ijb/")].to_csv(root / "analysis" / "comparison.csv", index=False)
    page = Page(run_report(root).read_text())
    text = page.full_text()
    ids = {a.get("id") for _, a in page.tags}
    assert "scale-banner" in ids  # real data gets the scale banner too, with its own title
    assert "Scale: small models, short training" in text and "Scale: synthetic data" not in text
    assert (f"{FIXTURE_IMAGES_SEEN} training images seen by the reference runs, 2.6×10⁵× fewer than the paper's 1.5×10⁸"
            in text)
    assert "IJB-style template verification (TAR@FAR): not available: no IJB set configured (params data.ijb is empty)" in text
    assert "casia (folders" in text


def test_required_inputs_are_clear_errors(tree, tmp_path, capsys):
    root = copy_tree(tree, tmp_path)
    shutil.rmtree(root / "analysis")
    with pytest.raises(ReportInputError, match=r"analysis not found: it is produced by the 'analyze' stage"):
        run_report(root)
    assert report_stage.main(["--root", str(root)]) == 2
    assert "'analyze' stage" in capsys.readouterr().err
    assert not (root / "reports" / "report.html").exists()
    (root / "params.yaml").unlink()
    with pytest.raises(ReportInputError, match="params.yaml not found"):
        run_report(root)


def test_malformed_inputs_name_the_file(tree, tmp_path):
    root = copy_tree(tree, tmp_path)
    comp = pd.read_csv(root / "analysis" / "comparison.csv").drop(columns=["paper_value"])
    comp.to_csv(root / "analysis" / "comparison.csv", index=False)
    with pytest.raises(ReportInputError, match=r"comparison.csv lacks column\(s\) \['paper_value'\]"):
        run_report(root)
    root = copy_tree(tree, tmp_path / "b")
    (root / "analysis" / "claims.json").write_text("{not json")
    with pytest.raises(ReportInputError, match=r"claims.json is not valid JSON"):
        run_report(root)
    root = copy_tree(tree, tmp_path / "c")
    (root / "analysis" / "figures" / "fig2_norm_vs_iq.png").write_bytes(b"GIF89a not a png")
    with pytest.raises(ValueError, match="fig2_norm_vs_iq.png is not a PNG"):
        run_report(root)


@pytest.mark.slow
def test_git_commit_and_dirty_flag(tree, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    root = copy_tree(tree, tmp_path)
    env_git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*env_git, "init", "-q"], check=True)
    subprocess.run([*env_git, "add", "params.yaml"], check=True)
    subprocess.run([*env_git, "commit", "-q", "-m", "fixture"], check=True)
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    text = Page(run_report(root).read_text()).full_text()
    assert f"commit {commit[:10]} (clean)" in text and commit in text and "clean working tree" in text
    with open(root / "params.yaml", "a") as fh:
        fh.write("# edited\n")
    text = Page(run_report(root).read_text()).full_text()
    assert "dirty: 1 changed file" in text and "uncommitted changes in 1 tracked file(s)" in text


def test_stage_cli_writes_the_report(tree, tmp_path, capsys):
    root = copy_tree(tree, tmp_path)
    assert report_stage.main(["--root", str(root), "--out", "out/r.html"]) == 0
    assert (root / "out" / "r.html").is_file() and "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in (root / "out").iterdir()) == ["r.html"]  # nothing temporary left


# --------------------------------------------------------------------------- helpers
def test_formatting_by_hand():
    assert fmt_mean_std(81.94935, 0.911941) == "81.95 ± 0.91"
    assert fmt_mean_std(55.7806, float("nan")) == "55.78"
    assert fmt_mean_std(None, 1.0) == "—"
    assert fmt_p(0.0171987) == "0.0172" and fmt_p(float("nan")) == "—" and fmt_p(3.2e-7) == "3.2e-07"
    assert fmt_value(0.93999, 3) == "0.940" and fmt_value("x") == "—"
    assert fmt_seconds(12.04) == "12.0 s" and fmt_seconds(600) == "10.0 min" and fmt_seconds(None) == "not recorded"
    assert fmt_seconds(9000) == "2.50 h"


def test_dvc_lock_and_wall_time_helpers(tmp_path):
    from fixtures_report import DVC_LOCK

    assert "not found" in dvc_lock_inputs(tmp_path).why
    (tmp_path / "dvc.lock").write_text(DVC_LOCK)
    stages = dvc_lock_inputs(tmp_path)
    assert [s["stage"] for s in stages] == ["prepare", "gst"]
    assert stages[0]["deps"][1] == {"path": "stages/prepare.py", "hash": "feedfacecafebeef0000111122223333", "size": "2048",
                                    "nfiles": None}
    assert stages[0]["params"] == ["params.yaml:data", "params.yaml:seed"]
    (tmp_path / "dvc.lock").write_text("stages: [unclosed")
    assert "not valid YAML" in dvc_lock_inputs(tmp_path).why
    rows = [{"stage": "prepare", "seconds": 5.0, "source": "m"}, {"stage": "train@a", "seconds": 10.0, "source": "t"},
            {"stage": "train@b", "seconds": 30.0, "source": "t"}, {"stage": "train@c", "seconds": None, "source": "t"},
            {"stage": "gst", "seconds": None, "source": "g"}]
    out = summarize_wall_times(rows)
    assert [r["stage"] for r in out] == ["prepare", "train (3 runs)", "gst"]
    assert out[1]["seconds"] == 40.0 and out[1]["detail"] == "total of 2 recorded; per run 10.0–30.0 s"


# --------------------------------------------------------------------------- browser
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html_path: Path, png: Path, profile: Path, size: str = "1400,3000") -> None:
    """Headless Chromium screenshot of a local HTML file (no network, throw-away profile)."""
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={size}", html_path.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)


@pytest.mark.slow
def test_browser_screenshot_is_not_blank(tree, html, tmp_path):
    from PIL import Image

    if _chromium() is None:
        # make test installs it (Debian's chromium) where it can; on CI a missing browser is a failure, not a skip
        if os.environ.get("CI"):
            pytest.fail("Chromium not installed on CI: make test should have installed Debian's chromium")
        pytest.skip("Chromium not installed (Debian: apt-get install chromium; make test does it as root)")

    png = tmp_path / "shot.png"
    screenshot(tree / "reports" / "report.html", png, tmp_path / "profile")
    assert png.is_file(), "Chromium wrote no screenshot"
    with Image.open(png) as im:
        assert im.size == (1400, 3000)
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.std() > 20
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 500  # text, badges, figures: far from a blank page
    # the top of the page is the report (title bar, banner), not an error page
    assert (rgb[:400] != 255).any(axis=2).mean() > 0.02


# --------------------------------------------------------------------------- with the real analysis stage
@pytest.mark.slow
def test_report_from_the_real_analysis_stage(tmp_path, monkeypatch):
    """fixtures_runs tree → the real analyze() and gst outputs → the report: every analysis part is shown."""
    from fixtures_runs import build_fixture_tree

    from marginlab.analysis.gst_study import write_gst_outputs
    from marginlab.analysis.stage import run_analyze
    from marginlab.core.config import load_params

    root = tmp_path / "study"
    root.mkdir()
    params = load_params(build_fixture_tree(root, epochs=2, probe_size=60))
    monkeypatch.chdir(root)  # analyze() resolves params paths against the working directory, as under dvc repro
    run_analyze(params, "analysis", n_resamples=1000, progress=False)
    write_gst_outputs(params.heads, root / "analysis" / "gst", n=21, curve_n=41)
    page = Page(run_report(root).read_text())
    text = page.full_text()
    notes = [n[:160] for n in text.split("not available: ")[1:]]
    zhat = pd.read_csv(root / "analysis" / "zhat.csv")
    expected = 2 if len(zhat) else 3  # the fixture's probe tables have no z_hat (unless fixtures_runs writes one)
    assert len(notes) == expected and "is not a git repository" in notes[-2] and "dvc.lock not found" in notes[-1], notes
    if not len(zhat):
        assert "zhat.csv has no rows: ẑ not recorded by this run's training code" in notes[0], notes
    figures = sorted((root / "analysis" / "figures").glob("*.png"))
    assert "zhat_by_progress.png" in {f.name for f in figures}
    imgs = [a["src"] for t, a in page.tags if t == "img"]
    assert len(imgs) == len(figures) + 1 + 3 + 1 + 1  # + claim 1's curve again
    claims = json.loads((root / "analysis" / "claims.json").read_text())["claims"]
    for row, claim in zip(page.rows("claims-summary")[1:], claims):
        assert row[1][4].split(" ")[0] == claim["verdict"].split(" ")[0]
        parts = claim.get("parts") or [claim]
        assert row[1][2].count("at this scale: ") == len(parts)
    summary = json.loads((root / "analysis" / "summary.json").read_text())
    assert summary["images_seen_reference"] == FIXTURE_IMAGES_SEEN // 3 * 2  # the real-analysis tree trains 2 epochs
    assert summary["paper_images_seen"] == 5_800_000 * 26
    comparison = pd.read_csv(root / "analysis" / "comparison.csv")
    for label, g in comparison.groupby("label"):
        rows = page.rows("comparison-table", **{"data-label": label})
        assert [r[0]["data-protocol"] for r in rows] == list(g["protocol"])
        assert [r[1][2] for r in rows] == [fmt_mean_std(m, s) for m, s in zip(g["mean"], g["std"])]
