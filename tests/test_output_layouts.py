"""The prepared-data, quality and run layouts (marginlab.core.layouts) agree with dvc.yaml and with what the writers write."""

from __future__ import annotations

from pathlib import Path

import yaml

from marginlab.core.layouts import PreparedLayout, QualityLayout, RunLayout

ROOT = Path(__file__).resolve().parents[1]


def _paths(entries) -> set[str]:
    """The paths of a dvc.yaml outs/metrics/plots/deps list (``path`` or ``{path: options}``)."""
    out = set()
    for e in entries or []:
        out |= set(e) if isinstance(e, dict) else {e}
    return out


def _stage(name: str) -> dict:
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]
    return stage.get("do", stage)


def test_dvc_yaml_spells_the_layouts_paths():
    """DVC reads no Python, so dvc.yaml spells the paths; they must be the layouts' (with DVC's variables)."""
    prepared = PreparedLayout("${data.prepared_dir}")
    quality = QualityLayout("${quality.output_dir}")
    run = RunLayout(Path("${runs_dir}") / "${key}")

    def posix(*paths: Path) -> set[str]:
        return {p.as_posix() for p in paths}

    assert _paths(_stage("prepare")["outs"]) == posix(prepared.root)
    assert _paths(_stage("quality")["outs"]) == posix(quality.scores, quality.summary, quality.timing)
    assert posix(prepared.root) <= _paths(_stage("quality")["deps"])
    train = _stage("train")
    assert _paths(train["outs"]) == posix(run.checkpoint, run.probe_dir, run.model)
    assert _paths(train["metrics"]) == posix(run.train_summary, run.live_metrics)
    assert _paths(train["plots"]) == posix(run.live_plots)
    assert posix(prepared.root, quality.scores) <= _paths(train["deps"])
    evaluate = _stage("evaluate")
    assert _paths(evaluate["outs"]) == posix(run.roc, run.eval_norms, run.eval_timing)
    assert _paths(evaluate["metrics"]) == posix(run.metrics)
    assert posix(run.model, prepared.root, quality.scores) <= _paths(evaluate["deps"])
    assert posix(quality.summary) <= _paths(_stage("analyze")["deps"])


def test_the_layouts_name_every_file_the_synthetic_prepare_writes(tmp_path):
    """Every file of a prepared synthetic set lies at a layout path (or inside an evaluation-set folder)."""
    from marginlab.data.synthetic import IJB_NAME
    from marginlab.data.prepare import run_prepare
    from marginlab.core.ownership import OUTPUT_MARKER
    from prepare_inputs import TINY_SYNTH, tiny_params

    lay = PreparedLayout(tmp_path / "prepared")
    run_prepare(tiny_params(source="synthetic", synthetic=TINY_SYNTH), lay.root, workers=1, progress=False)
    named = {lay.train_rec, lay.train_idx, lay.train_meta, lay.manifest, lay.samples_png, lay.root / OUTPUT_MARKER}
    named |= {p for name in ("hq", "lq") for p in (lay.verification_bin(name), lay.verification_meta(name))}
    named |= {lay.set_meta(lay.ijb_set(IJB_NAME)), lay.set_meta(lay.tinyface)}
    files = {p for p in lay.root.rglob("*") if p.is_file()}
    assert named <= files
    rest = files - named
    assert all(lay.ijb_set(IJB_NAME) in p.parents or lay.tinyface in p.parents for p in rest), sorted(rest)
    assert lay.verification_bins() == [lay.verification_bin("hq"), lay.verification_bin("lq")]
    assert lay.ijb_sets() == [lay.ijb_set(IJB_NAME)]


def test_run_layout_paths():
    run = RunLayout("runs/x")
    assert run.name == "x" and run.probe_epoch(3).as_posix() == "runs/x/probe/epoch_03.parquet"
    assert run.progress_step(12).as_posix() == "runs/x/probe/progress/step_0000012.parquet"
    assert run.eval_timing.name == "eval_timing.json" and run.live_plots.as_posix() == "runs/x/live/plots/metrics"
