"""File I/O shared by every stage: atomic outputs and the streamed sha256 of a file.

Atomic output: write to a temporary sibling, then rename, so nothing half-written remains.

A write that fails for a reason of the file system (no space left, read-only folder, no permission,
quota) raises :class:`OutputWriteError` naming the *output* path, never the temporary one, and the
reason ("cannot write runs/x/model.pt: no space left on device"); the temporary file is removed and
the previous output is left as it was. Torch files go through :func:`torch_save`, which hands
``torch.save`` a Python file object so that a full disk surfaces as ``OSError`` (ENOSPC) instead of
torch's path-less ``RuntimeError: [enforce fail at inline_container.cc]``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Protocol

#: Bytes read at a time by :func:`sha256_file`.
HASH_CHUNK = 1 << 20

#: errno values that mean "this output cannot be written here" (as opposed to a missing input).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO})


class OutputWriteError(OSError):
    """An output could not be written; ``str()`` is ``cannot write <path>: <reason>``."""

    def __init__(self, path: str | Path, cause: OSError):
        reason = cause.strerror or str(cause)
        if isinstance(cause, OutputWriteError):  # a nested atomic write: keep its reason, name the final path
            reason = cause.strerror
        super().__init__(cause.errno, reason, str(path))

    def __str__(self) -> str:
        reason = (self.strerror or "").strip()
        return f"cannot write {self.filename}: {reason[:1].lower() + reason[1:]}"


def _failed_output(err: BaseException, tmp: Path, final: Path) -> Path | None:
    """The output path to name for an ``OSError`` raised while writing ``tmp`` (or inside it), else None.

    A path inside a temporary directory is mapped onto the final directory, so the message names
    ``prepared/verification/lfw.bin`` rather than ``.prepared.x1y2.tmp/verification/lfw.bin``.
    """
    if not isinstance(err, OSError) or err.errno not in WRITE_ERRNOS:
        return None
    if err.filename is None:  # e.g. pyarrow: "[errno 28] No space left on device" with no path
        return final
    name = Path(os.fsdecode(err.filename))
    if name == tmp or name == tmp.parent:
        return final
    if tmp in name.parents:
        return final / name.relative_to(tmp)
    return None


def _reraise_as_write_error(err: BaseException, tmp: Path, final: Path) -> None:
    target = _failed_output(err, tmp, final)
    if target is not None:
        raise OutputWriteError(target, err) from err  # type: ignore[arg-type]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: Path) -> None:
    """mkstemp/mkdtemp create 0600/0700 entries; give the result the usual umask-based mode."""
    base = 0o777 if path.is_dir() else 0o666
    os.chmod(path, base & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On an exception the temporary file (or directory) is removed and ``path`` is left untouched.
    The temporary name keeps the final suffix so libraries that infer formats from it still work.
    """
    path = Path(path)
    sfx = path.suffix if suffix is None else suffix
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{sfx}", dir=path.parent)
    except OSError as err:
        raise OutputWriteError(path, err) from err
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            _publish_mode(tmp_path)
        os.replace(tmp_path, path)
    except BaseException as err:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)
        _reraise_as_write_error(err, tmp_path, path)
        raise


def check_replaceable(path: str | Path) -> None:
    """Raise :class:`OutputWriteError` unless ``path`` is absent, an empty folder, or a folder holding the
    marker that :func:`atomic_dir` writes: the second line of defence behind the path policy, so that no
    params value can make a stage replace a folder it did not create (a user's photos, the project)."""
    from marginlab.core.ownership import OUTPUT_MARKER, has_marker

    path = Path(path)
    if path.is_symlink():
        why = "it is a symbolic link; marginlab replaces only folders it created"
    elif not path.exists():
        return
    elif not path.is_dir():
        why = "it exists and is not a folder"
    elif has_marker(path) or next(path.iterdir(), None) is None:
        return
    else:
        why = (f"it exists and was not written by marginlab (no {OUTPUT_MARKER} file inside); move or delete it "
               "yourself if it is an old output, or choose another output folder")
    raise OutputWriteError(path, OSError(errno.EEXIST, why))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` as a whole.

    Only a folder this function created (its marker inside, :mod:`marginlab.core.ownership`) or an empty one is
    replaced; anything else is refused before any work starts, and again just before the swap."""
    from marginlab.core.ownership import write_marker

    path = Path(path)
    check_replaceable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise OutputWriteError(path, err) from err
    try:
        yield tmp
        write_marker(tmp)
        _publish_mode(tmp)
        check_replaceable(path)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        _reraise_as_write_error(err, tmp, path)
        raise


def torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically; a full disk raises :class:`OutputWriteError`."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        try:
            torch.save(obj, fh)
        except RuntimeError as err:  # torch wraps the write's OSError (ENOSPC) in "enforce fail ..."
            cause = _os_error_in_chain(err)
            if cause is None:
                raise
            raise cause from err


class RefusedFileError(ValueError):
    """A torch file that pickles something other than tensors and plain data; it was not loaded."""


def torch_load_data(source: Any, *, map_location: Any = "cpu") -> Any:
    """``torch.load(source, weights_only=True)``: tensors, numbers, strings, bytes and plain containers.

    Files from elsewhere (``dvc pull``, a colleague's model) are data: a pickle that would build any other
    object (a ``__reduce__`` payload, a class) is refused without running it, as :class:`RefusedFileError`
    whose message is torch's reason without its advice to retry with ``weights_only=False``. Other
    failures (truncated file, not a pickle at all) propagate as torch raises them.
    """
    import pickle

    import torch

    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _refusal_reason(err)
        if "global" in reason.lower() or "reduce" in reason.lower():  # an object torch would have to build
            raise RefusedFileError(reason) from None
        raise  # bad opcodes and the like: not a torch file at all


def _refusal_reason(err: Exception) -> str:
    """The specific line of torch's weights_only error ("Unsupported global: ...", "Trying to load
    unsupported GLOBAL posix.system ..."), not the surrounding advice."""
    text = str(err)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. Please use|\n\n|$)", text, flags=re.S)
    if found:
        return " ".join(found.group(1).split())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    specific = [ln for ln in lines if ln.startswith(("Trying to", "Unsupported"))]
    return (specific or lines or [type(err).__name__])[0]


def _os_error_in_chain(err: BaseException) -> OSError | None:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (sorted keys, indented: stable diffs for DVC metrics)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_parquet(path: str | Path, frame: "Any") -> None:
    """Write a pandas DataFrame to parquet atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class _Progress(Protocol):
    def update(self, n: int) -> object: ...


def sha256_file(path: str | Path, *, progress: _Progress | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks; ``progress.update(n)`` (e.g. a tqdm bar) per chunk."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return h.hexdigest()
