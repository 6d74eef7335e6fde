"""A trained run's identity in the analysis is the one its model.pt recorded, not the params file's."""

from __future__ import annotations

import pytest

from marginlab.analysis.collect import run_table
from marginlab.core.config import validate_params
from marginlab.core.io import torch_save
from marginlab.models import MODEL_FORMAT, MODEL_VERSION, ModelFileError


def test_trained_runs_are_read_from_model_pt_the_others_as_configured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = validate_params({"runs": {
        "ada-s0": {"head": "adaface", "seed": 0, "tags": ["main"]},
        "cos-s1": {"head": "cosface", "seed": 1, "head_params": {"m": 0.3}, "label": "cos"},
    }})
    trained = params.run("ada-s0").model_copy(update={"head_params": {**params.run("ada-s0").head_params, "m": 0.25},
                                                      "tags": ["ablation_m"]})
    (tmp_path / "runs" / "ada-s0").mkdir(parents=True)
    torch_save({"format": MODEL_FORMAT, "version": MODEL_VERSION, "resolved_run": trained.model_dump(mode="json")},
               tmp_path / "runs" / "ada-s0" / "model.pt")
    table = run_table(params).set_index("run")
    assert table.loc["ada-s0", "setting_m"] == 0.25 and table.loc["ada-s0", "tags"] == ("ablation_m",)
    assert not table.loc["ada-s0", "is_default"]  # m differs from heads.adaface.m
    assert table.loc["cos-s1", "setting_m"] == 0.3 and table.loc["cos-s1", "label"] == "cos"
    assert table.loc["cos-s1", "seed"] == 1 and table.loc["cos-s1", "proxy"] == "norm"
    assert table.loc["cos-s1", "head_params"] == params.run("cos-s1").head_params  # configured = resolved


def test_a_model_pt_without_a_run_record_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = validate_params({"runs": {"ada-s0": {"head": "adaface"}}})
    (tmp_path / "runs" / "ada-s0").mkdir(parents=True)
    torch_save({"format": MODEL_FORMAT, "version": MODEL_VERSION}, tmp_path / "runs" / "ada-s0" / "model.pt")
    with pytest.raises(ModelFileError, match="records no valid run configuration"):
        run_table(params)
