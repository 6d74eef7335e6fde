"""Atomic outputs: all or nothing, with normal permissions."""

import os
import stat

import pandas as pd
import pytest

from marginlab.core.io import HASH_CHUNK, atomic_dir, atomic_path, sha256_file, write_json, write_parquet


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
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [".marginlab-output", "new"]  # with its marker
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "d") as d:
            (d / "partial").write_text("3")
            raise ValueError
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [".marginlab-output", "new"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


# --------------------------------------------------------------------------- write failures
def test_write_failures_name_the_output_not_the_temporary(tmp_path, monkeypatch):
    """ENOSPC inside an atomic write (pyarrow gives no path; a nested write names a temp path) is reported
    as 'cannot write <final path>: no space left on device', and nothing is left behind."""
    import errno

    from marginlab.core.cli import describe_os_error
    from marginlab.core.io import OutputWriteError, torch_save

    target = tmp_path / "out" / "table.json"
    with pytest.raises(OutputWriteError) as exc:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(exc.value) == f"cannot write {target}: no space left on device"
    assert list(target.parent.iterdir()) == []

    root = tmp_path / "prepared"
    with pytest.raises(OutputWriteError) as exc:
        with atomic_dir(root) as d:
            with atomic_path(d / "verification" / "lfw.bin") as inner:
                raise OSError(errno.ENOSPC, "No space left on device", str(inner))
    assert str(exc.value) == f"cannot write {root / 'verification' / 'lfw.bin'}: no space left on device"
    assert list(tmp_path.iterdir()) == [tmp_path / "out"]

    # a missing *input* read inside the body is not turned into a write error
    with pytest.raises(FileNotFoundError) as missing:
        with atomic_path(target):
            open(tmp_path / "no-such-input.txt")
    assert not isinstance(missing.value, OutputWriteError)
    assert describe_os_error(missing.value).startswith(f"cannot read {tmp_path / 'no-such-input.txt'}: no such file")

    # torch.save wraps the write's OSError in "[enforce fail at inline_container.cc]": the OSError comes out
    import torch

    def save_on_full_disk(obj, f):  # what torch.save does on ENOSPC (measured on a 64 KiB tmpfs)
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", save_on_full_disk)
    with pytest.raises(OutputWriteError, match=r"cannot write .*model\.pt: no space left on device"):
        torch_save({"w": torch.zeros(3)}, tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()


def test_unwritable_folder_is_a_write_error(tmp_path):
    from marginlab.core.io import OutputWriteError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputWriteError, match=r"cannot write .*file/x\.json: "):
        write_json(blocker / "x.json", {})


def test_sha256_file_streams_in_chunks_and_reports_progress(tmp_path):
    import hashlib

    data = os.urandom(HASH_CHUNK + 123)
    (tmp_path / "f").write_bytes(data)

    class Bar:
        seen: list[int] = []

        def update(self, n):
            self.seen.append(n)

    bar = Bar()
    assert sha256_file(tmp_path / "f", progress=bar) == hashlib.sha256(data).hexdigest()
    assert bar.seen == [HASH_CHUNK, 123]
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
