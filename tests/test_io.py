"""Atomic outputs: all or nothing, with normal permissions."""

import os
import stat

import pandas as pd
import pytest

from marginlab.io import atomic_dir, atomic_path, write_json, write_parquet


def test_atomic_path_publishes_on_success_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_json(target, {"b": 1, "a": 2})
    assert target.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text().startswith("{")
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]  # no temp file left


def test_outputs_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_parquet(tmp_path / "t.parquet", pd.DataFrame({"a": [1, 2]}))
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.parquet").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert pd.read_parquet(tmp_path / "t.parquet")["a"].tolist() == [1, 2]


def test_atomic_dir_replaces_whole_directory(tmp_path):
    with atomic_dir(tmp_path / "d") as d:
        (d / "old").write_text("1")
    with atomic_dir(tmp_path / "d") as d:
        (d / "new").write_text("2")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["new"]
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "d") as d:
            (d / "partial").write_text("3")
            raise ValueError
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
