"""The released stage (marginlab.released.study) on a tiny prepared set, with a stand-in model whose feature norm
is a known function of the image: the correlations, the paired augmentation test and the protocols must
recover what was planted, and the report's section must show them with the set each was measured on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from marginlab.core.cli import main
from marginlab.core.config import ConfigError, load_params
from marginlab.core.layouts import ReleasedLayout
from marginlab.data.formats import decode_image, open_recordio, write_bin
from marginlab.released.embedder import Embedder
from marginlab.released.study import NORMALISED_REFUSAL
from tiny_train import N_IMAGES, write_prepared


class BrightnessNet(nn.Module):
    """Feature = (mean pixel value of the model input + 1.5) × a fixed unit vector: the norm is the brightness."""

    def __init__(self, normalised: bool = False):
        super().__init__()
        self.direction = nn.Parameter(torch.nn.functional.normalize(torch.arange(1.0, 9.0), dim=0), requires_grad=False)
        self.normalised = normalised

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 1.0 if self.normalised else x.mean(dim=(1, 2, 3)) + 1.5
        return (torch.ones(len(x)) * scale)[:, None] * self.direction[None]


def _brightness(img: np.ndarray) -> float:
    return float(img.astype(np.float64).mean())


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A prepared tiny set (train.rec + one verification .bin), IQ = brightness, one released entry."""
    prepared = write_prepared(tmp_path / "prepared")
    reader = open_recordio(prepared / "train.rec")
    images = [decode_image(reader[i][0]) for i in range(N_IMAGES)]
    labels = [int(reader[i][1]) for i in range(N_IMAGES)]
    pairs, issame = [], []
    for k in range(0, 48, 2):
        j = k + 1 if k % 4 == 0 else (k + 13) % N_IMAGES  # same identity (12 per class) or another
        pairs += [reader[k][0], reader[j][0]]
        issame.append(labels[k] == labels[j])
    (prepared / "verification").mkdir()
    write_bin(prepared / "verification" / "hq.bin", pairs, np.array(issame))
    bin_images = [decode_image(b) for b in pairs]
    scores = pd.concat([
        pd.DataFrame({"split": "train", "index": np.arange(N_IMAGES), "iq": [_brightness(i) for i in images]}),
        pd.DataFrame({"split": "bin:hq", "index": np.arange(len(bin_images)), "iq": [_brightness(i) for i in bin_images]}),
    ])
    scores["brisque"] = 100 - scores["iq"]
    (tmp_path / "quality").mkdir()
    scores.to_parquet(tmp_path / "quality" / "scores.parquet", index=False)
    (tmp_path / "ir18.ckpt").write_bytes(b"a released file")
    raw = {"data": {"prepared_dir": "prepared"}, "quality": {"output_dir": "quality"},
           "evaluate": {"device": "cpu", "batch_size": 16},
           "released": {"ir18": {"file": "ir18.ckpt", "format": "adaface", "arch": "ir_18", "trained_on": "MS1MV2",
                                 "images_seen": 1_000_000, "sample_size": 40}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _stand_in(monkeypatch, net: nn.Module, normalised: bool = False) -> list:
    """Replace the import (tested in the importers' own tests) by a folder and the loader by ``net``."""
    calls = []

    def fake_import(src, fmt, out, arch=None):
        calls.append((Path(src).name, fmt, arch))
        Path(out).mkdir(parents=True)
        return Path(out)

    def fake_load(folder, device="cpu"):
        return Embedder(net, input_size=32, channel_order="RGB", embedding_size=8, normalised_output=normalised,
                        info={"imported": {"sha256": "ab" * 32, "arch": "ir_18", "format": "adaface"}})

    monkeypatch.setattr("marginlab.released.importers.import_model", fake_import)
    monkeypatch.setattr("marginlab.released.embedder.load_embedder", fake_load)
    return calls


def test_the_stage_recovers_planted_relations(project, monkeypatch, capsys):
    calls = _stand_in(monkeypatch, BrightnessNet())
    assert main(["released", "ir18"]) == 0
    assert calls == [("ir18.ckpt", "adaface", "ir_18")]
    out = ReleasedLayout(project / "released" / "ir18")
    metrics = json.loads(out.metrics.read_text())
    assert metrics["model"]["trained_on"] == "MS1MV2" and metrics["model"]["images_seen"] == 1_000_000
    assert metrics["protocol"]["sample_size"] == 40
    rows = {(r["set"], r["target"]): r for r in metrics["correlation"]}
    # norm = brightness + const, IQ = brightness: rank-identical on both sets
    train = rows[("train-sample", "iq")]
    assert train["spearman"] == pytest.approx(1.0) and train["bootstrap"] == "identity" and train["n"] == 40
    assert rows[("eval:bin:hq", "iq")]["spearman"] == pytest.approx(1.0)
    assert rows[("eval:bin:hq", "iq")]["bootstrap"] == "image"
    assert ("train-sample", "gt_quality") in rows  # the synthetic ground truth is used where the data has it
    # the norms written are those of the model, computed here independently
    sample = pd.read_parquet(out.sample_norms)
    clean = sample[sample["pass"] == "clean"].reset_index(drop=True)
    reader = open_recordio(project / "prepared" / "train.rec")
    expected = [(decode_image(reader[int(i)][0]).astype(np.float64) / 255 - 0.5).mean() / 0.5 + 1.5 for i in clean["index"]]
    np.testing.assert_allclose(clean["norm"], expected, rtol=1e-5)
    assert sorted(sample.columns) == sorted(["index", "class_label", "pass", "norm", "iq", "gt_quality", "crop", "lowres",
                                             "photometric", "flip"])
    # the crop pastes the face onto black: a darker image, a lower norm (claim 4's direction)
    augmentation = {r["augmentation"]: r for r in metrics["augmentation"]}
    assert augmentation["crop"]["n"] > 0 and augmentation["crop"]["mean_log_ratio"] < 0
    assert augmentation["crop"]["mean_log_ratio_hi"] < 0 and augmentation["any"]["bootstrap"] == "identity"
    assert "hq" in metrics["verification"] and metrics["verification"]["hq"]["pairs"] == 24
    assert set(pd.read_parquet(out.eval_norms)["split"]) == {"bin:hq"}
    assert json.loads(out.timing.read_text())["images"] == 48 + 80
    printed = json.loads(capsys.readouterr().out)
    assert printed["released"] == "ir18" and printed["correlation"][0]["n"] > 0


def test_a_normalised_model_is_measured_on_the_protocols_only(project, monkeypatch):
    _stand_in(monkeypatch, BrightnessNet(normalised=True), normalised=True)
    assert main(["released", "ir18"]) == 0
    metrics = json.loads((project / "released" / "ir18" / "metrics.json").read_text())
    assert metrics["correlation"] == {"refused": NORMALISED_REFUSAL} == metrics["augmentation"]
    assert metrics["model"]["normalised_output"] is True and "hq" in metrics["verification"]


def test_missing_file_and_unknown_entry_are_named(project, monkeypatch, capsys):
    _stand_in(monkeypatch, BrightnessNet())
    (project / "ir18.ckpt").unlink()
    assert main(["released", "ir18"]) == 2
    err = capsys.readouterr().err
    assert "released.ir18.file" in err and "ir18.ckpt is not a file" in err
    assert not (project / "released").exists()  # nothing half-written
    assert main(["released", "other"]) == 2
    assert "'other' is not in params 'released'" in capsys.readouterr().err
    params = load_params(project / "params.yaml", root=project)
    with pytest.raises(ConfigError, match="not in params 'released'"):
        from marginlab.released.study import measure_released

        measure_released(params, "other")


def test_report_section_shows_each_set_and_the_scale(project, monkeypatch):
    from marginlab.report.inputs import ReportInputs
    from marginlab.report.released_section import released_section

    _stand_in(monkeypatch, BrightnessNet())
    assert main(["released", "ir18"]) == 0
    params = load_params(project / "params.yaml", root=project)
    inputs = ReportInputs(root=project, params_path=project / "params.yaml", params=params, analysis_dir=project / "analysis")
    section = released_section(inputs)
    (entry,) = section["entries"]
    assert entry["note"] is None and entry["trained_on"] == "MS1MV2" and entry["sha256"] == "ab" * 6
    assert "×10" in entry["images_seen"] and "fewer than" in entry["images_seen"]
    sets = {r["set"] for r in entry["correlations"]}
    assert any("not the model's training data" in s for s in sets) and any("evaluation split bin:hq" in s for s in sets)
    assert "0.52" in section["paper"] and "training set" in section["paper"]
    assert any(r["metric"].startswith("10-fold") for r in entry["protocols"])
    # own data: the training-sample row is the paper's setting
    params.released["ir18"].own_data = True
    json_path = project / "released" / "ir18" / "metrics.json"
    metrics = json.loads(json_path.read_text())
    metrics["model"]["own_data"] = True
    json_path.write_text(json.dumps(metrics))
    (entry,) = released_section(inputs)["entries"]
    assert [r["paper_setting"] for r in entry["correlations"][:2]] == [True, True]  # the training sample first
    assert "its own training data, the paper's setting" in entry["headline"]
    # an entry not measured yet names the command
    params.released["other"] = params.released["ir18"].model_copy()
    notes = {e["name"]: e["note"] for e in released_section(inputs)["entries"]}
    assert "dvc repro released@other" in notes["other"]
