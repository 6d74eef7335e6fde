"""The training run is resolved once, at the stage boundary, from exactly the keys the train stage declares."""

from __future__ import annotations

import pickle

import pytest

from marginlab.core.config import validate_params
from marginlab.core.params_view import UndeclaredParamError, restrict
from marginlab.stages import STAGES
from marginlab.train.job import TrainJob

RAW = {"runs": {"ada-s0": {"head": "adaface", "seed": 1, "train": {"identities": 50}}, "cos-s0": {"head": "cosface"}}}


def test_the_train_declaration_is_exactly_what_the_job_reads():
    """Through the stage's view the job equals the unrestricted one, and without any one declared key it
    cannot be built: every declared key is read, and nothing else is."""
    params = validate_params(RAW)
    declared = STAGES.get("train").declared
    job = TrainJob.from_params(restrict(params, declared, stage="train", run="ada-s0"), "ada-s0")
    assert job == TrainJob.from_params(params, "ada-s0")
    assert job.identities_key == "runs.ada-s0.train.identities" and job.run.train.identities == 50
    for key in declared:
        narrower = [k for k in declared if k != key]
        with pytest.raises(UndeclaredParamError):
            TrainJob.from_params(restrict(params, narrower, stage="train", run="ada-s0"), "ada-s0")


def test_the_job_pickles_for_spawned_workers():
    job = TrainJob.from_params(validate_params(RAW), "cos-s0")
    assert pickle.loads(pickle.dumps(job)) == job
    assert job.name == "cos-s0" and job.run_layout.root.as_posix() == "runs/cos-s0"
