"""Every stage declares the params it reads (marginlab.pipeline.params_usage).

The tracker is checked on its own (which access records which key); then every stage runs, tracked,
in a copy of the repository with a small two-run params.yaml (two heads, so the stages that read the
defaults of every run's head show it), and each key a stage read must be declared in dvc.yaml (or
interpolated in its deps/outs). The same runs check the static import graph: every package module a
stage loaded is in its derived code deps.
"""

from __future__ import annotations

import copy
import shutil

import pytest
import yaml
from pipeline_helpers import copy_repo, tool_env

from marginlab.config import validate_params
from marginlab.pipeline.params_usage import (
    WHOLE,
    ReadTracker,
    check_params,
    covered,
    format_params_report,
    interpolated_keys,
)


def tracked(raw: dict):
    params = validate_params(raw)
    tracker = ReadTracker()
    tracker.track(params)
    return params, tracker


RAW = {"runs": {"ada-s0": {"head": "adaface", "seed": 1}, "cos-s0": {"head": "cosface"}}}


def test_tracker_records_dotted_keys():
    params, t = tracked(RAW)
    try:
        assert params.train.lr == 0.1
        assert params.runs["ada-s0"].head == "adaface"
        assert "cos-s0" in params.runs
        assert params.runs.get("nope") is None
        params.model.model_dump()
        _ = params.data  # a section alone is not a read
        assert t.reads == {"train.lr", "runs.ada-s0.head", "runs.cos-s0", "runs.nope", "model"}
        t.reads.clear()
        assert sorted(params.runs) == ["ada-s0", "cos-s0"]  # iterating a mapping reads its key set
        assert t.reads == {"runs"}
    finally:
        t.close()


def test_tracker_sees_reads_inside_model_methods():
    params, t = tracked(RAW)
    try:
        resolved = params.run("ada-s0")
        assert resolved.seed == 1 and resolved.head == "adaface"
        assert {"runs.ada-s0", "runs.ada-s0.head", "runs.ada-s0.seed", "heads.adaface", "train", "model"} <= t.reads
        assert not any(r.startswith(("runs.cos-s0", "heads.cosface")) for r in t.reads)
        t.reads.clear()
        _ = resolved.train.lr  # a new object built from params: not params
        copy.deepcopy(params.evaluate)  # a copy takes the section whole
        assert t.reads == {"evaluate"}
    finally:
        t.close()


def test_tracker_leaves_other_instances_and_classes_alone():
    params, t = tracked(RAW)
    other = validate_params({})
    _ = other.train.lr, other.runs["adaface"].head
    assert t.reads == set()
    assert "__getattribute__" in type(params).__dict__
    t.close()
    assert "__getattribute__" not in type(params).__dict__
    assert params.train.lr == 0.1 and t.reads == set()


def test_covered_and_interpolated_keys():
    assert covered("train.lr", ["train"]) and covered("runs.a.head", ["runs.a"]) and covered("x", [WHOLE])
    assert not covered("training", ["train"]) and not covered("train", ["train.lr"])
    dvc = {"stages": {"train": {"foreach": "${runs}", "do": {
        "cmd": "python stages/train.py '${key}'",
        "deps": ["${data.prepared_dir}", "heads/${item.head}.py"],
        "params": ["seed"], "outs": ["${runs_dir}/${key}/model.pt"]}}}}
    assert interpolated_keys(dvc, "train@a-s0") == ["data.prepared_dir", "runs.a-s0.head", "runs_dir"]


# ----------------------------------------------------------------------------------------- every stage
RUNS = ("adaface-s0", "cosface-s0")


@pytest.fixture(scope="module")
def stage_params(tmp_path_factory, model_path):
    """Every stage of a small copy of the repository, run tracked: {stage: StageParams}."""
    from pipeline_helpers import small_params

    raw = small_params()
    raw["runs"] = {name: {"head": name.split("-")[0], "seed": 0, "tags": ["main"]} for name in RUNS}
    tmp = tmp_path_factory.mktemp("params_usage")
    params_file = tmp / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    repo = copy_repo(tmp / "repo", params_file)
    (repo / "models").mkdir(exist_ok=True)
    shutil.copy2(model_path, repo / "models" / model_path.name)  # the converted BRISQUE model (conftest)
    env = {**tool_env(), "PYTHONPATH": str(repo / "src"), "OMP_NUM_THREADS": "1"}
    quiet = ["--no-progress"]
    extra = {"prepare": quiet, "quality": quiet, "analyze": quiet, **{f"evaluate@{r}": quiet for r in RUNS},
             # offline: no allmodel to convert, so the stage stops (exit 2) after reading its params
             "brisque_model": ["--allmodel", "no-such-allmodel"]}
    order = ["prepare", "brisque_model", "quality", *(f"train@{r}" for r in RUNS), *(f"evaluate@{r}" for r in RUNS),
             "analyze", "gst", "report"]
    results = check_params(repo, order, extra_args=extra, env=env)
    print(format_params_report(results))
    return {r.stage: r for r in results}


@pytest.mark.slow
def test_every_stage_declares_every_param_it_reads(stage_params):
    report = format_params_report(list(stage_params.values()))
    for name, r in stage_params.items():
        assert r.exit == (2 if name == "brisque_model" else 0), f"{name}:\n{r.stderr[-3000:]}"
        assert r.reads, f"{name} read no params"
        assert not r.missing, report
        assert not r.unexpected_modules, report  # the static import graph saw every module


@pytest.mark.slow
def test_params_coverage_catches_a_removed_key(stage_params):
    """train reads the global seed (its run seed derives from it): without `seed` declared, it is missing."""
    train = stage_params[f"train@{RUNS[0]}"]
    assert "seed" in train.reads and "seed" in train.declared
    without = [d for d in train.declared if d != "seed"] + train.in_definition
    assert not covered("seed", without)
    # the analysis reads the defaults of every run's head, hence `heads`, not `heads.adaface`
    assert {"heads.adaface", "heads.cosface"} <= set(stage_params["analyze"].reads)
    evaluate = stage_params[f"evaluate@{RUNS[0]}"]
    # evaluate checks model.pt against the run's resolved configuration (a model.pt of another configuration
    # is refused, issue #21), so it reads the shared train/model sections and its head's defaults
    assert any(r.startswith("train") for r in evaluate.reads) and any(r.startswith("model") for r in evaluate.reads)
