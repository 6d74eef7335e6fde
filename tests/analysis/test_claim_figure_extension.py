"""What a new claim and a new analysis figure cost: one module each. A toy claim and a toy figure, defined
here and registered for this module only, reach ``claims.json`` (with their verdict), ``summary.json``'s
counts, ``analysis/figures`` and the report (claim summary row, figure with its caption) without an edit
anywhere else (README "Extending")."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures_runs import DEFAULT_RUNS, build_fixture_tree

from marginlab.analysis.claim_parts import make_claim, make_part
from marginlab.analysis.claims import CLAIMS, ClaimEvidence, evaluate_claims, register_claim
from marginlab.analysis.decision import decision
from marginlab.analysis.figure_specs import FIGURES, FigureInputs, figure_specs, register_figure
from marginlab.analysis.stage import run_analyze
from marginlab.core.config import load_params
from marginlab.report.render import run_report

RUNS = {k: DEFAULT_RUNS[k] for k in ("adaface-s0", "adaface-s1", "cosface-s0", "curricularface-s0")}
TOY_ID = 6
TOY_FIGURE = "toy_norm_histogram.png"
TOY_CAPTION = "Toy: clean-probe feature norms of the reference runs (a figure registered by a test)"


def toy_claim(ev: ClaimEvidence) -> dict:
    """Supported when the reference runs' clean-probe feature norms are positive on average."""
    probe = ev.collection.probe
    norms = probe[probe["run"].isin(ev.reference_runs) & (probe["pass"] == "clean")]["norm"]
    verdict = "supported" if len(norms) and float(norms.mean()) > 0 else "inconclusive"
    part = make_part("a: positive norms", verdict, "supported if the mean clean-probe norm is > 0",
                     {"mean_norm": float(norms.mean()), "runs": list(ev.reference_runs)},
                     decision(verdict, None, None, "analytic: exact"))
    return make_claim(TOY_ID, "Toy claim", "Feature norms are positive.", "none (a test's claim)", [part],
                      "the single part's verdict")


def toy_figure(inputs: FigureInputs, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.hist(inputs.collection.probe["norm"], bins=20)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


@pytest.fixture(scope="module")
def registered():
    register_claim(str(TOY_ID), order=60)(toy_claim)
    register_figure(TOY_FIGURE, caption=TOY_CAPTION, section="fig2", order=75)(toy_figure)
    try:
        yield
    finally:
        CLAIMS.discard(str(TOY_ID))
        FIGURES.discard(TOY_FIGURE)


@pytest.fixture(scope="module")
def study(registered, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("extension") / "study"
    root.mkdir()
    params = load_params(build_fixture_tree(root, runs=RUNS, epochs=2, probe_size=60))
    cwd = os.getcwd()
    os.chdir(root)  # analyze() resolves params paths against the working directory, as under dvc repro
    try:
        run_analyze(params, "analysis", n_resamples=1000, progress=False)
    finally:
        os.chdir(cwd)
    run_report(root)
    return root


def test_builtin_claims_and_figures_are_registered_in_order():
    assert [s.id for s in sorted(CLAIMS.values(), key=lambda s: s.order)][:5] == ["1", "2", "3", "4", "5"]
    names = [s.name for s in figure_specs()]
    assert names.index("fig2_norm_vs_iq.png") < names.index("correlation_vs_progress.png") < names.index(
        "augmentation_by_norm.png") < names.index("scale_vs_images_seen.png")
    assert {s.section for s in figure_specs()} == {"fig2", "scale", "zhat", "training"}


def test_new_claim_reaches_claims_json_and_summary(study):
    claims = json.loads((study / "analysis" / "claims.json").read_text())["claims"]
    assert [str(c["id"]) for c in claims] == ["1", "2", "3", "4", "5", str(TOY_ID)]
    toy = claims[-1]
    assert toy["verdict"] == "supported" and toy["parts"][0]["numbers"]["mean_norm"] > 0
    summary = json.loads((study / "analysis" / "summary.json").read_text())
    verdicts = [c["verdict"] for c in claims]
    assert summary["claims_supported"] == verdicts.count("supported")
    assert summary["claims_inconclusive"] == verdicts.count("inconclusive")


def test_new_claim_in_the_report_summary(study):
    html = (study / "reports" / "report.html").read_text(encoding="utf-8")
    row = html[html.index(f'<tr data-claim="{TOY_ID}">'):]
    row = row[:row.index("</tr>")]
    assert "Toy claim" in row and "supported" in row
    assert f'id="claim-{TOY_ID}"' in html and "a: positive norms" in html


def test_new_figure_is_drawn_and_shown_with_its_caption(study):
    png = study / "analysis" / "figures" / TOY_FIGURE
    assert png.read_bytes().startswith(b"\x89PNG")
    html = (study / "reports" / "report.html").read_text(encoding="utf-8")
    fig2 = html[html.index('<section id="fig2">'):]
    fig2 = fig2[:fig2.index("</section>")]
    assert f'alt="{TOY_FIGURE}"><figcaption>{TOY_CAPTION}</figcaption>' in fig2
    assert fig2.index('alt="augmentation_by_norm.png"') < fig2.index(f'alt="{TOY_FIGURE}"')  # its order, 75 > 70


def test_no_figures_writes_the_claims_but_no_figure(registered, tmp_path, monkeypatch):
    params = load_params(build_fixture_tree(tmp_path, runs=RUNS, epochs=2, probe_size=60))
    monkeypatch.chdir(tmp_path)
    run_analyze(params, "analysis", n_resamples=1000, progress=False, figures=False)
    assert not (tmp_path / "analysis" / "figures").exists()
    claims = json.loads((tmp_path / "analysis" / "claims.json").read_text())["claims"]
    assert claims[-1]["id"] == TOY_ID


def test_registries_check_what_they_are_given(monkeypatch):
    from marginlab.analysis.claims import claim_registry
    from marginlab.core.name_registry import Registry

    monkeypatch.setattr(claim_registry, "CLAIMS", Registry("claim"))  # only the bad claim, for this test
    register_claim("bad", order=1)(lambda ev: {"id": "other"})
    with pytest.raises(ValueError, match="registered as 'bad' returned id 'other'"):
        evaluate_claims(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown report section"):
        register_figure("x.png", caption="x", section="appendix", order=1)
    with pytest.raises(ValueError, match="a .png file name"):
        register_figure("figures/x.svg", caption="x", section="fig2", order=1)
