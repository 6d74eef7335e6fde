"""InsightFace verification ``.bin`` files (lfw, cfp_fp, agedb_30, calfw, cplfw, ...).

A ``.bin`` is a pickle of ``(bins, issame_list)``: ``bins`` holds 2N encoded images, pair i being
images 2i and 2i+1; ``issame_list`` holds N >= 1 booleans.  An image entry is any buffer of encoded
image bytes: ``bytes`` (also ``np.bytes_``), ``bytearray``, ``memoryview``, a trivial ``np.void``, or a
numpy ``uint8`` array of any shape whose bytes (C order) are the encoded image, e.g. the (N, 1) array
that OpenCV 4's ``cv2.imencode`` returns, which many published ``.bin`` files hold as it is.  A
decoded pixel array (e.g. (112, 112, 3) whose bytes do not start with an image signature) is rejected
with a message that says so.  The released files were pickled by Python 2, whose ``str`` payloads
cannot be decoded as text: a plain load fails with ``UnicodeDecodeError`` and is retried with
``encoding="bytes"`` (what InsightFace's ``load_bin`` does).

Loading uses a restricted unpickler that only resolves the numpy/builtin callables such files need
(array and scalar reconstruction, bytes re-encoding), so a ``.bin`` cannot run arbitrary code.
Written files use pickle protocol 4, plain ``bytes`` and a list of Python bools.

Decoded images are RGB ``uint8`` (H, W, 3) (:func:`marginlab.data.formats.images.decode_image`).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from marginlab.data.formats.errors import VerificationBinError
from marginlab.data.formats.images import decode_image
from marginlab.core.io import atomic_path

__all__ = ["read_bin", "read_bin_encoded", "write_bin"]

# (module, name) pairs a verification .bin may reference.  numpy.core.* is numpy<2's name of numpy._core.
_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("builtins", "bytearray"),
    ("builtins", "bytes"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :]
        if module == "__builtin__":  # Python 2 name of builtins
            module = "builtins"
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a verification .bin")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> object:
    raw = path.read_bytes()
    try:
        return _RestrictedUnpickler(io.BytesIO(raw)).load()
    except UnicodeDecodeError:
        pass  # Python 2 str payloads: retry below
    except Exception as exc:  # noqa: BLE001 - unpickling bad bytes raises many types; report them as one
        raise VerificationBinError(f"{path}: not a readable verification .bin pickle ({type(exc).__name__}: {exc})") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001
        raise VerificationBinError(f"{path}: not a readable verification .bin pickle ({type(exc).__name__}: {exc})") from None


# Leading bytes of the encoded formats OpenCV reads (JPEG, PNG, BMP, GIF, WebP/RIFF, TIFF, JPEG 2000).
_IMAGE_SIGNATURES = (b"\xff\xd8", b"\x89PNG", b"BM", b"GIF8", b"RIFF", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP")


def _looks_decoded(arr: np.ndarray) -> bool:
    """A uint8 array with two or more non-trivial axes (H, W[, C]) that does not start like an image file."""
    if sum(d > 1 for d in arr.shape) < 2:
        return False
    head = arr.reshape(-1)[:8].tobytes()
    return not head.startswith(_IMAGE_SIGNATURES)


def _as_bytes(item: object, path: Path, i: int) -> bytes:
    """The encoded bytes of image entry ``i`` (any C-contiguous uint8 buffer), or VerificationBinError."""
    if isinstance(item, (bytes, bytearray)):  # np.bytes_ is a bytes subclass
        return bytes(item)
    if isinstance(item, memoryview):
        if item.itemsize != 1:
            raise VerificationBinError(f"{path}: image {i} must be a buffer of bytes, got a memoryview of format {item.format!r}")
        return item.tobytes()
    if isinstance(item, np.void) and item.dtype.fields is None and item.dtype.subdtype is None:
        return item.tobytes()
    if isinstance(item, np.ndarray) and item.dtype == np.uint8:
        if _looks_decoded(item):
            raise VerificationBinError(
                f"{path}: image {i} is a decoded pixel array of shape {item.shape}; a .bin stores encoded JPEG/PNG "
                f"bytes; got array dtype={item.dtype} shape={item.shape} that does not start with an image signature"
            )
        return np.ascontiguousarray(item).tobytes()
    desc = f"array dtype={item.dtype} shape={item.shape}" if isinstance(item, np.ndarray) else type(item).__name__
    raise VerificationBinError(f"{path}: image {i} must be encoded bytes or a uint8 array of encoded bytes, got {desc}")


def _as_issame(values: object, path: Path) -> np.ndarray:
    try:
        items = list(values)  # type: ignore[arg-type]
    except TypeError:
        raise VerificationBinError(f"{path}: issame_list must be a sequence of booleans, got {type(values).__name__}") from None
    out = np.empty(len(items), dtype=bool)
    for i, v in enumerate(items):
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1)):
            out[i] = bool(v)
        else:
            raise VerificationBinError(f"{path}: issame_list[{i}] must be a boolean, got {v!r}")
    return out


def _check_counts(n_images: int, n_pairs: int, path: Path) -> None:
    if n_pairs == 0:
        raise VerificationBinError(
            f"{path}: holds 0 pairs ({n_images} images, empty issame_list); a verification .bin needs at least one pair"
        )
    if n_images != 2 * n_pairs:
        raise VerificationBinError(
            f"{path}: {n_images} images for {n_pairs} pairs; a verification .bin needs exactly 2N images for N pairs"
        )


def read_bin_encoded(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """Load a verification ``.bin``: ``(encoded_images, issame)`` with ``issame`` a bool array (N,).

    Raises :class:`VerificationBinError` naming the file when it is not a ``(bins, issame_list)``
    pickle, an image entry is not a buffer of encoded bytes (see the module docstring), it holds no
    pair, or ``len(bins) != 2 * len(issame_list)``.
    """
    path = Path(path)
    if not path.is_file():
        raise VerificationBinError(f"{path}: verification .bin not found")
    obj = _load_pickle(path)
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise VerificationBinError(f"{path}: expected a pickled pair (bins, issame_list), got {type(obj).__name__}")
    bins, issame_list = obj
    if isinstance(bins, (bytes, str)) or not isinstance(bins, (list, tuple, np.ndarray)):
        raise VerificationBinError(f"{path}: bins must be a list of encoded images, got {type(bins).__name__}")
    issame = _as_issame(issame_list, path)
    _check_counts(len(bins), len(issame), path)
    return [_as_bytes(b, path, i) for i, b in enumerate(bins)], issame


def read_bin(path: str | Path, *, progress: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """Load and decode a verification ``.bin``: ``(images RGB uint8 (H, W, 3), issame bool (N,))``.

    Pair i is ``images[2i], images[2i+1]``.  A corrupt image raises
    :class:`~marginlab.data.formats.errors.CorruptImageError` naming the file and image position.
    """
    path = Path(path)
    encoded, issame = read_bin_encoded(path)
    images = [
        decode_image(data, source=f"{path} (image {i})")
        for i, data in enumerate(tqdm(encoded, desc=f"decode {path.name}", disable=not progress, unit="img"))
    ]
    return images, issame


def write_bin(path: str | Path, encoded_images: Sequence[bytes], issame: Sequence[bool] | np.ndarray) -> None:
    """Write ``(encoded_images, issame)`` as a verification ``.bin`` (pickle protocol 4), atomically.

    ``encoded_images`` (any entry form :func:`read_bin_encoded` accepts) must hold 2N images for the
    N >= 1 booleans of ``issame``; they are stored as ``bytes`` and ``issame`` as a list of Python bools.
    """
    path = Path(path)
    flags = _as_issame(issame, path)
    bins = [_as_bytes(b, path, i) for i, b in enumerate(encoded_images)]
    _check_counts(len(bins), len(flags), path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump((bins, [bool(v) for v in flags]), fh, protocol=4)
