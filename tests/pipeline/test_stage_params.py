"""dvc.yaml's params: lists are the stages' declarations (marginlab.pipeline.stage_params)."""

from __future__ import annotations

import shutil

import yaml
from pipeline_helpers import ROOT

from marginlab.pipeline.stage_params import check, dvc_params, fix
from marginlab.stages import STAGES


def test_dvc_yaml_params_are_the_declarations():
    assert check(ROOT) == []
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    train = doc["stages"]["train"]["do"]["params"]
    assert "heads.${item.head}" in train and "runs.${key}" in train
    assert doc["stages"]["report"]["params"] == [{"params.yaml": None}]


def test_placeholders_become_dvc_templates():
    assert dvc_params(["seed", "heads.{head}", "runs.{run}"]) == ["seed", "heads.${item.head}", "runs.${key}"]
    assert dvc_params(["*"]) == ["params.yaml"]


def test_a_drifted_dvc_yaml_is_caught_and_rewritten(tmp_path):
    """A key removed from dvc.yaml (DVC would then not rerun train when it changes) fails the check; fix
    restores every list from the declarations and keeps the rest of the file, comments included."""
    shutil.copy2(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    text = (tmp_path / "dvc.yaml").read_text()
    drifted = text.replace("        - augment\n", "", 1)
    assert drifted != text
    (tmp_path / "dvc.yaml").write_text(drifted)
    problems = check(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("train:") and "augment" in problems[0]
    assert fix(tmp_path) == ["train"]
    assert check(tmp_path) == [] and (tmp_path / "dvc.yaml").read_text() == text
    assert fix(tmp_path) == []  # idempotent


def test_reasons_are_written_as_comments():
    text = (ROOT / "dvc.yaml").read_text()
    for info in (STAGES.get("train"), STAGES.get("gst")):
        for key, why in (info.params or {}).items():
            if why:
                assert f"- {dvc_params([key])[0]}  # {why}\n" in text, (info.name, key)
