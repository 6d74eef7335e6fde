"""Verification .bin reader/writer: round trip, Python-2 pickles, restricted unpickling, errors."""

from __future__ import annotations

import io
import pickle
import struct

import numpy as np
import pytest

from marginlab.data.formats import (
    CorruptImageError,
    DataFormatError,
    VerificationBinError,
    decode_image,
    encode_jpeg,
    encode_png,
    read_bin,
    read_bin_encoded,
    write_bin,
)


def _faces(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(n)]


class _Py2Pickler(pickle._Pickler):
    """Emulates Python 2's pickler: every str/bytes object becomes a py2 ``str`` (SHORT_BINSTRING /
    BINSTRING opcodes), which Python 3 can only load with an ``encoding``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def _py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy < 2 (and every Python 2 numpy) names the module numpy.core
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def test_round_trip(tmp_path):
    faces = _faces(6)
    encoded = [encode_png(f) for f in faces]  # lossless: decoded pixels must match exactly
    write_bin(tmp_path / "lfw.bin", encoded, [True, False, True])
    images, issame = read_bin(tmp_path / "lfw.bin")
    assert issame.dtype == bool and issame.tolist() == [True, False, True]
    assert len(images) == 6
    for got, want in zip(images, faces):
        np.testing.assert_array_equal(got, want)  # RGB in, RGB out
    enc, same = read_bin_encoded(tmp_path / "lfw.bin")
    assert enc == encoded and same.tolist() == [True, False, True]
    # written as protocol 4 with plain bytes and Python bools (readable by InsightFace's load_bin)
    raw = (tmp_path / "lfw.bin").read_bytes()
    assert raw[:2] == b"\x80\x04"
    bins, flags = pickle.loads(raw)
    assert all(type(b) is bytes for b in bins) and all(type(v) is bool for v in flags)
    assert list(tmp_path.iterdir()) == [tmp_path / "lfw.bin"]


def test_python2_pickle_with_bytes_and_arrays(tmp_path):
    faces = _faces(4)
    jpegs = [encode_jpeg(f, quality=95) for f in faces]
    bins = [jpegs[0], np.frombuffer(jpegs[1], dtype=np.uint8), jpegs[2], np.frombuffer(jpegs[3], dtype=np.uint8)]
    raw = _py2_pickle((bins, [True, np.bool_(False)]))
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(raw)  # what a plain load does with a Python 2 file
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(raw)
    encoded, issame = read_bin_encoded(path)
    assert encoded == jpegs and issame.tolist() == [True, False]
    images, _ = read_bin(path)
    np.testing.assert_array_equal(images[1], decode_image(jpegs[1]))


def test_python3_pickle_of_uint8_arrays(tmp_path):
    jpegs = [encode_jpeg(f) for f in _faces(2)]
    path = tmp_path / "a.bin"
    path.write_bytes(pickle.dumps(([np.frombuffer(j, np.uint8) for j in jpegs], np.array([1], dtype=bool)), protocol=5))
    encoded, issame = read_bin_encoded(path)
    assert encoded == jpegs and issame.tolist() == [True]


def test_pair_count_mismatch(tmp_path):
    jpegs = [encode_jpeg(f) for f in _faces(3)]
    path = tmp_path / "odd.bin"
    path.write_bytes(pickle.dumps((jpegs, [True, False])))
    with pytest.raises(VerificationBinError, match=r"odd\.bin: 3 images for 2 pairs; .* 2N images for N pairs"):
        read_bin_encoded(path)
    with pytest.raises(VerificationBinError, match="3 images for 1 pairs"):
        write_bin(tmp_path / "w.bin", jpegs, [True])
    assert not (tmp_path / "w.bin").exists()


def test_structure_errors(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(pickle.dumps([b"a", b"b", b"c"]))
    with pytest.raises(VerificationBinError, match=r"x\.bin: expected a pickled pair"):
        read_bin_encoded(path)
    path.write_bytes(pickle.dumps(([b"a", 3], [True])))
    with pytest.raises(VerificationBinError, match=r"image 1 must be encoded bytes"):
        read_bin_encoded(path)
    path.write_bytes(pickle.dumps(([b"a", np.zeros((2, 2), np.uint8)], [True])))
    with pytest.raises(VerificationBinError, match=r"image 1 .* got array dtype=uint8 shape=\(2, 2\)"):
        read_bin_encoded(path)
    path.write_bytes(pickle.dumps(([b"a", b"b"], ["yes"])))
    with pytest.raises(VerificationBinError, match=r"issame_list\[0\] must be a boolean"):
        read_bin_encoded(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(VerificationBinError, match="not a readable verification .bin"):
        read_bin_encoded(path)
    with pytest.raises(VerificationBinError, match="not found"):
        read_bin_encoded(tmp_path / "missing.bin")


def test_refuses_arbitrary_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([Evil(), b"b"], [True])))
    with pytest.raises(VerificationBinError, match="builtins.print' is not allowed"):
        read_bin_encoded(path)


def test_corrupt_image_names_file_and_position(tmp_path):
    jpegs = [encode_jpeg(f) for f in _faces(4)]
    jpegs[3] = jpegs[3][:-20]
    write_bin(tmp_path / "cfp_fp.bin", jpegs, [True, False])
    with pytest.raises(CorruptImageError, match=r"cfp_fp\.bin \(image 3\): truncated JPEG") as info:
        read_bin(tmp_path / "cfp_fp.bin")
    assert isinstance(info.value, DataFormatError)


# --------------------------------------------------------------------------- encoded-buffer forms (issue #11)
def _cv2_jpegs(n: int) -> list[np.ndarray]:
    """Images encoded the way published .bin tools do: ``cv2.imencode('.jpg', img)[1]``, which OpenCV 4
    returns as an (N, 1) uint8 array (reshaped here so the test does not depend on the OpenCV version)."""
    import cv2

    return [cv2.imencode(".jpg", f)[1].reshape(-1, 1) for f in _faces(n)]


def test_reads_every_form_of_encoded_buffer(tmp_path):
    arrays = _cv2_jpegs(8)
    raw = [a.tobytes() for a in arrays]
    assert arrays[0].shape == (len(raw[0]), 1) and arrays[0].dtype == np.uint8
    bins = [
        arrays[0],  # (N, 1), as cv2.imencode returns it
        arrays[1].flatten(),  # (N,)
        np.frombuffer(raw[2], dtype=np.uint8),  # read-only (N,) view of bytes
        bytearray(raw[3]),
        np.bytes_(raw[4]),
        np.void(raw[5]),
        raw[6],
        arrays[7].reshape(1, -1),  # (1, N)
    ]
    path = tmp_path / "cfp_ff.bin"
    with open(path, "wb") as fh:
        pickle.dump((bins, [True, False, True, False]), fh)
    encoded, issame = read_bin_encoded(path)
    assert encoded == raw and all(type(e) is bytes for e in encoded)
    assert issame.tolist() == [True, False, True, False]
    images, _ = read_bin(path)
    assert [im.shape for im in images] == [(12, 10, 3)] * 8
    # a memoryview cannot be pickled, but write_bin takes one (and every other form) as input
    write_bin(tmp_path / "w.bin", [memoryview(raw[0]), *bins[1:]], [True, False, True, False])
    assert read_bin_encoded(tmp_path / "w.bin")[0] == raw


def test_python2_pickle_of_cv2_imencode_arrays(tmp_path):
    arrays = _cv2_jpegs(4)
    path = tmp_path / "lfw.bin"
    path.write_bytes(_py2_pickle((arrays, [True, False])))
    encoded, issame = read_bin_encoded(path)
    assert encoded == [a.tobytes() for a in arrays] and issame.tolist() == [True, False]
    assert read_bin(path)[0][3].shape == (12, 10, 3)


def test_decoded_pixel_arrays_are_rejected_clearly(tmp_path):
    jpegs = [encode_jpeg(f) for f in _faces(2)]
    path = tmp_path / "pixels.bin"
    for pixels in (np.zeros((112, 112, 3), np.uint8), np.full((112, 112), 7, np.uint8)):
        path.write_bytes(pickle.dumps(([jpegs[0], pixels, jpegs[1], jpegs[0]], [True, False])))
        with pytest.raises(VerificationBinError) as info:
            read_bin_encoded(path)
        assert f"image 1 is a decoded pixel array of shape {pixels.shape}; a .bin stores encoded JPEG/PNG bytes" in str(info.value)
        assert "pixels.bin" in str(info.value)
    # other element types are still refused
    path.write_bytes(pickle.dumps(([jpegs[0], np.frombuffer(jpegs[1], np.uint8).astype(np.int16)], [True])))
    with pytest.raises(VerificationBinError, match=r"image 1 must be encoded bytes .* got array dtype=int16"):
        read_bin_encoded(path)


def test_refuses_globals_reached_through_array_forms(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_cv2_jpegs(1)[0], Evil()], [True])))
    with pytest.raises(VerificationBinError, match=r"global 'posix.system' is not allowed"):
        read_bin_encoded(path)


def test_zero_pairs_is_rejected(tmp_path):
    path = tmp_path / "empty.bin"
    for empty in (([], []), ([], np.zeros(0, dtype=bool))):
        path.write_bytes(pickle.dumps(empty))
        with pytest.raises(VerificationBinError, match=r"empty\.bin: holds 0 pairs"):
            read_bin_encoded(path)
    with pytest.raises(VerificationBinError, match="holds 0 pairs"):
        write_bin(tmp_path / "w.bin", [], [])
    assert not (tmp_path / "w.bin").exists()
