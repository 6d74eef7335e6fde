"""A stage sees only the params keys it declares (marginlab.core.params_view)."""

from __future__ import annotations

import copy

import pytest

from marginlab.core.config import ConfigError, validate_params
from marginlab.core.params_view import ALL, UndeclaredParamError, covered, expand, restrict
from marginlab.stages import STAGES

RAW = {"runs": {"ada-s0": {"head": "adaface", "seed": 1}, "cos-s0": {"head": "cosface"}},
       "released": {"sface": {"file": "models/sface.onnx", "format": "onnx", "arch": "sface"},
                    "ir18": {"file": "ir18.ckpt", "format": "adaface"}}}


@pytest.fixture(scope="module")
def params():
    return validate_params(RAW)


def test_declared_keys_read_and_others_refused(params):
    view = restrict(params, ["train", "data.channel_order", "runs.{run}", "heads.{head}"], stage="x", run="ada-s0")
    assert view.train.lr == 0.1 and view.train is params.train  # a covered section is handed out whole
    assert view.data.channel_order == params.data.channel_order
    assert view.runs["ada-s0"].seed == 1 and "ada-s0" in view.runs
    assert view.heads.adaface.m == params.heads.adaface.m  # {head} is the run's head
    for read in (lambda: view.seed, lambda: view.data.prepared_dir, lambda: view.model, lambda: view.heads.cosface,
                 lambda: view.runs["cos-s0"], lambda: "cos-s0" in view.runs, lambda: list(view.runs),
                 lambda: view.data.model_dump()):
        with pytest.raises(UndeclaredParamError):
            read()
    with pytest.raises(UndeclaredParamError) as err:
        _ = view.evaluate.batch_size
    assert "'evaluate'" in str(err.value) and "stage 'x'" in str(err.value) and "--fix-deps" in str(err.value)


def test_a_missing_undeclared_entry_is_refused_not_defaulted(params):
    view = restrict(params, ["runs.{run}"], stage="x", run="ada-s0")
    assert view.runs.get("ada-s0") is not None
    with pytest.raises(UndeclaredParamError):
        view.runs.get("nope")


def test_methods_of_the_schema_read_through_the_view(params):
    """Params.run reads runs.<run>, heads.<head>, train and model: all must be declared."""
    full = ["runs.{run}", "heads.{head}", "train", "model"]
    view = restrict(params, full, stage="train", run="ada-s0")
    assert view.run("ada-s0") == params.run("ada-s0")
    for missing in full:
        narrow = restrict(params, [k for k in full if k != missing], stage="train", run="ada-s0")
        with pytest.raises(UndeclaredParamError):
            narrow.run("ada-s0")


def test_the_whole_file_and_whole_copies(params):
    assert restrict(params, [ALL], stage="report") is params
    view = restrict(params, ["seed"], stage="x")
    with pytest.raises(UndeclaredParamError):
        copy.deepcopy(view)  # a copy takes the whole object


def test_writes_are_checked_too(params):
    mine = validate_params(RAW)
    view = restrict(mine, ["quality.device"], stage="x")
    view.quality.device = "cpu"
    assert mine.quality.device == "cpu"
    with pytest.raises(UndeclaredParamError):
        view.quality.threads = 3


def test_unknown_run_and_placeholders(params):
    with pytest.raises(ConfigError, match="'nope' is not in params 'runs'"):
        restrict(params, ["runs.{run}"], stage="train", run="nope")
    assert expand(["runs.{run}", "heads.{head}", "seed"], "a", "arcface") == ("runs.a", "heads.arcface", "seed")
    with pytest.raises(ValueError):
        expand(["runs.{run}"])
    assert covered("train.lr", ["train"]) and covered("x.y", [ALL]) and not covered("training", ["train"])
    assert not covered("train", ["train.lr"])


def test_every_stage_declaration_is_well_formed(params):
    """Each pipeline stage declares keys that exist in the schema; only per-run stages use {run}/{head}."""
    for name, info in STAGES.items():
        if info.params is None:
            assert not info.pipeline, name
            continue
        assert info.declared, name
        for key in info.declared:
            assert ("{" in key) <= info.per_run, (name, key)
            if key == ALL:
                continue
            node = params
            entry = "ada-s0" if info.foreach == "runs" else "sface"  # an entry of the stage's section
            for part in key.format(run=entry, head="adaface").split("."):
                node = node[part] if isinstance(node, dict) else getattr(node, part)


def test_an_entry_of_another_section(params):
    """A stage run once per entry of ``released`` sees that entry only, and no run's head is looked up."""
    view = restrict(params, ["released.{run}", "seed"], stage="released", run="sface", section="released")
    assert view.released["sface"].arch == "sface" and view.seed == params.seed
    with pytest.raises(UndeclaredParamError):
        view.released["ir18"]
    with pytest.raises(ConfigError, match="'nope' is not in params 'released'.*sface, ir18"):
        restrict(params, ["released.{run}"], stage="released", run="nope", section="released")
    with pytest.raises(ValueError, match="needs the run"):
        expand(["heads.{head}"], run="sface")
