"""What a new evaluation-set format costs: one module. A toy format, defined here and registered for this
module only, flows through quality scoring, evaluation (metrics.json, norms), the analysis tables and the
report's naming without an edit anywhere else (README "Extending")."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from evalset_inputs import face_bgr
from marginlab.core.config import DataConfig, validate_params
from marginlab.evalsets import EVAL_SETS, EvalSet, GroundTruthFile, SetResult, SplitSource, eval_sets, register_eval_set
from marginlab.evalsets.evalset import l2, norm_rows, pct
from marginlab.core.layouts import PreparedLayout, RunLayout


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


class ToyPairs(EvalSet):
    """``toy_pairs/<name>/<k>.png``: images 2i and 2i+1 form pair i, genuine when i is even; cosine > 0.5 accepts."""

    name = "toy_pairs"
    family = "toy"
    split_prefix = "toy"
    title = "toy pairs (cosine accuracy)"
    expects = "toy_pairs/<name>/"

    def _files(self, layout: PreparedLayout, name: str) -> list[Path]:
        return sorted(self.folder(layout).joinpath(name).glob("*.png"))

    def instances(self, layout):
        root = self.folder(layout)
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def splits(self, layout, name):
        files = self._files(layout, name)
        return [SplitSource(f"toy:{name}", len(files), lambda i: _read_rgb(files[i]), tuple(files))]

    def ground_truth_files(self, layout):
        return [GroundTruthFile(f"toy:{n}", self.folder(layout) / n / "meta.parquet") for n in self.instances(layout)]

    def evaluate(self, layout, name, tools):
        files = self._files(layout, name)
        feats = tools.embed(len(files), lambda i: _read_rgb(files[i]), f"toy:{name}")
        normed = l2(feats)
        cos = (normed[0::2] * normed[1::2]).sum(axis=1)
        same = np.arange(len(cos)) % 2 == 0
        metrics = {"accuracy": float(np.mean((cos > 0.5) == same)), "pairs": int(len(cos))}
        gt = pd.read_parquet(self.folder(layout) / name / "meta.parquet")["gt_quality"].to_numpy()
        return SetResult(metrics, None, [norm_rows(f"toy:{name}", feats, gt)])

    def summary(self, sets):
        return {"toy_mean_accuracy": float(np.mean([m["accuracy"] for m in sets.values()])) if sets else None}

    def metric_rows(self, set_name, metrics):
        return [{"protocol": f"toy/{set_name}", "metric": "accuracy", "value": pct(metrics["accuracy"]), "se": np.nan}]

    def unavailable(self, data):
        return "no toy set in the prepared data"


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    register_eval_set(ToyPairs)
    yield
    EVAL_SETS.discard(ToyPairs.name)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A prepared directory holding only the toy format's set ``setA`` (no train.rec, .bin, IJB or TinyFace)."""
    root = tmp_path_factory.mktemp("toy") / "prepared"
    folder = PreparedLayout(root).eval_dir("toy_pairs") / "setA"
    folder.mkdir(parents=True)
    for k in range(8):
        pair = k // 2
        identity = pair if pair % 2 == 0 or k % 2 == 0 else pair + 50
        cv2.imwrite(str(folder / f"{k:02d}.png"), face_bgr(identity, k))
    pd.DataFrame({"index": np.arange(8), "gt_quality": np.linspace(1, 0.3, 8)}).to_parquet(folder / "meta.parquet")
    return root


def test_the_toy_format_is_registered_after_the_built_in_ones():
    assert [f.name for f in eval_sets()] == ["verification", "ijb", "tinyface", "toy_pairs"]


def test_quality_scoring_reads_its_images_and_ground_truth(prepared, model_path, tmp_path):
    from marginlab.quality.sources import load_ground_truth, prepared_sources
    from marginlab.quality.stage import run_quality

    sources = prepared_sources(prepared)
    assert [(s.split, s.length) for s in sources] == [("toy:setA", 8)]
    gt = load_ground_truth(prepared, sources)
    assert set(gt["split"]) == {"toy:setA"} and len(gt) == 8
    params = validate_params({"data": {"prepared_dir": str(prepared)},
                              "quality": {"model_path": str(model_path), "output_dir": str(tmp_path / "quality"),
                                          "chunk_size": 4, "batch_size": 8, "device": "cpu", "threads": 1}})
    summary = run_quality(params, progress=False)
    scores = pd.read_parquet(tmp_path / "quality" / "scores.parquet")
    assert scores.groupby("split").size().to_dict() == {"toy:setA": 8}
    assert summary["splits"]["toy:setA"]["ground_truth"]["n"] == 8


def _tiny_model(params) -> None:
    from marginlab.models import build_modules, save_model

    resolved = params.run("tiny")
    torch.manual_seed(0)
    backbone, head = build_modules(resolved, num_classes=4)
    save_model(RunLayout.of(params, "tiny").model, backbone_state=backbone.state_dict(),
               head_state=head.state_dict(), resolved=resolved, num_classes=4, channel_order="BGR", epoch=1,
               selection="last")


@pytest.fixture(scope="module")
def evaluated(prepared, tmp_path_factory) -> dict:
    from marginlab.evaluate import run_evaluate

    root = tmp_path_factory.mktemp("toy_runs")
    params = validate_params({
        "data": {"prepared_dir": str(prepared)}, "quality": {"output_dir": str(root / "quality")},
        "model": {"backbone": "ir_18", "width": 0.125, "embedding_size": 16, "input_size": 16},
        "runs": {"tiny": {"head": "adaface", "tags": ["main"]}}, "runs_dir": str(root / "runs"),
    })
    _tiny_model(params)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions on a shared CPU
    try:
        run_evaluate(params, "tiny", device="cpu", progress=False)
    finally:
        torch.set_num_threads(before)
    return {"params": params, "run_dir": root / "runs" / "tiny"}


def test_evaluation_writes_its_section_summary_and_norms(evaluated):
    run_dir = evaluated["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"verification", "ijb", "identification", "toy", "summary"} <= set(metrics)  # written with sorted keys
    assert metrics["verification"] == metrics["ijb"] == metrics["identification"] == {}
    assert set(metrics["toy"]["setA"]) == {"accuracy", "pairs"} and metrics["toy"]["setA"]["pairs"] == 4
    assert metrics["summary"]["toy_mean_accuracy"] == metrics["toy"]["setA"]["accuracy"]
    norms = pd.read_parquet(run_dir / "eval_norms.parquet")
    assert norms.groupby("split").size().to_dict() == {"toy:setA": 8}
    np.testing.assert_allclose(norms["gt_quality"], np.linspace(1, 0.3, 8))


def test_analysis_tables_carry_its_family_after_the_built_in_ones(evaluated):
    from marginlab.analysis.collect import collect
    from marginlab.analysis.tables import comparison_table, decision_protocols, primary_low_quality_protocol

    col = collect(evaluated["params"])
    rows = col.metrics
    assert rows[["protocol", "family", "set", "metric", "quality"]].values.tolist() == [
        ["toy/setA", "toy", "setA", "accuracy", "low"]]
    table = comparison_table(rows, col.runs)
    assert table["protocol"].tolist() == ["toy/setA"]
    protocols = ["toy/setA", "identification/tinyface rank1", "verification/lq"]
    assert decision_protocols(protocols) == ["verification/lq", "identification/tinyface rank1", "toy/setA"]
    assert primary_low_quality_protocol(["toy/setA"], {"toy/setA": "low"}) == "toy/setA"


def test_the_report_names_it_and_orders_its_splits():
    from marginlab.report import plots, render
    from marginlab.report.inputs import Missing

    inputs = SimpleNamespace(params=SimpleNamespace(data=DataConfig(source="folders", train_folders="x")))
    notes = render._families_missing(inputs, ["verification/lfw"])
    assert notes[-1] == "toy pairs (cosine accuracy): not available: no toy set in the prepared data"
    assert plots._split_order(["toy:setA", "tinyface:Probe", "train", "bin:lfw"]) == [
        "train", "bin:lfw", "tinyface:Probe", "toy:setA"]
    manifest = {"counts": {"train_images": 1, "train_classes": 1, "toy_pairs": {"setA": 8}}}
    absent = Missing("not written in this test")
    data = render._data(SimpleNamespace(manifest=manifest, params=SimpleNamespace(data=DataConfig()),
                                        samples_png=absent, quality_summary=absent))
    assert ("toy_pairs", "setA: 8") in data["facts"]
