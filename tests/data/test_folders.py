"""Identity folders, folder -> RecordIO conversion and TinyFace-style identification sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from marginlab.data.formats import (
    CorruptImageError,
    EmptyFolderError,
    FolderFormatError,
    MissingFileError,
    decode_image,
    encode_jpeg,
    encode_png,
    folders_to_recordio,
    list_image_folder,
    open_recordio,
    read_identification_set,
)


def _img(seed: int, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth image: JPEG re-encoding error stays small and measurable
    base = rng.integers(40, 216, (1, 1, 3))
    ramp = np.linspace(0, 30, size)[None, :, None]
    return np.clip(base + ramp, 0, 255).astype(np.uint8).repeat(size, axis=0)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "faces"
    _write(root / "bob" / "2.jpg", encode_jpeg(_img(1)))
    _write(root / "bob" / "1.JPG", encode_jpeg(_img(2)))
    _write(root / "alice" / "a.png", encode_png(_img(3)))
    _write(root / "alice" / "nested" / "b.jpeg", encode_jpeg(_img(4)))
    _write(root / "carol" / "c.bmp", _bmp(_img(5)))
    _write(root / "carol" / "notes.txt", b"not an image")
    _write(root / "carol" / ".hidden.jpg", b"ignored")
    _write(root / ".cache" / "x.jpg", encode_jpeg(_img(6)))
    _write(root / "README.md", b"top-level files are ignored")
    return root


def _bmp(image: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".bmp", image[..., ::-1])
    assert ok
    return buf.tobytes()


def test_list_image_folder(tree):
    paths, labels, names = list_image_folder(tree)
    assert names == ["alice", "bob", "carol"]
    assert [p.relative_to(tree).as_posix() for p in paths] == [
        "alice/a.png",
        "alice/nested/b.jpeg",
        "bob/1.JPG",
        "bob/2.jpg",
        "carol/c.bmp",
    ]
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 1, 1, 2]


def test_folder_errors(tmp_path):
    with pytest.raises(MissingFileError, match=r"nope: identity-folder root not found"):
        list_image_folder(tmp_path / "nope")
    _write(tmp_path / "file.jpg", encode_jpeg(_img(0)))
    with pytest.raises(FolderFormatError, match="must be a directory"):
        list_image_folder(tmp_path / "file.jpg")
    flat = tmp_path / "flat"
    _write(flat / "x.jpg", encode_jpeg(_img(0)))
    with pytest.raises(EmptyFolderError, match=r"flat: no class sub-folders \(found images \['x.jpg'\]"):
        list_image_folder(flat)
    empty_root = tmp_path / "empty"
    empty_root.mkdir()
    with pytest.raises(EmptyFolderError, match="no class sub-folders"):
        list_image_folder(empty_root)
    root = tmp_path / "r"
    _write(root / "a" / "1.jpg", encode_jpeg(_img(0)))
    _write(root / "b" / "readme.txt", b"")
    with pytest.raises(EmptyFolderError, match=r"r/b: class folder holds no image"):
        list_image_folder(root)


def test_folders_to_recordio(tree, tmp_path):
    info = folders_to_recordio(tree, tmp_path / "out" / "train.rec", progress=False)
    assert info["num_images"] == 5 and info["num_classes"] == 3
    assert info["class_names"] == ["alice", "bob", "carol"] and info["dropped_classes"] == []
    assert info["reencoded"] == 2 and info["skipped"] == []  # the PNG and the BMP
    reader = open_recordio(tmp_path / "out" / "train.rec")
    assert reader.identity_ranges.tolist() == [[1, 3], [3, 5], [5, 6]]
    paths, labels, _ = list_image_folder(tree)
    for i, (path, label) in enumerate(zip(paths, labels.tolist())):
        data, got_label = reader[i]
        assert got_label == label
        assert data[:2] == b"\xff\xd8"  # everything stored is JPEG
        if path.suffix.lower() in (".jpg", ".jpeg"):
            assert data == path.read_bytes()  # JPEG kept byte for byte
        else:
            original = decode_image(path.read_bytes())
            diff = np.abs(decode_image(data).astype(int) - original.astype(int))
            assert 0 < diff.max() and diff.mean() < 3.0  # re-encoded at quality 95


def test_png_named_jpg_is_reencoded(tmp_path):
    root = tmp_path / "r"
    _write(root / "a" / "1.jpg", encode_png(_img(0)))
    info = folders_to_recordio(root, tmp_path / "t.rec", progress=False)
    assert info["reencoded"] == 1
    assert open_recordio(tmp_path / "t.rec")[0][0][:2] == b"\xff\xd8"


def test_corrupt_image_strict_and_skipped(tree, tmp_path):
    _write(tree / "bob" / "3.jpg", encode_jpeg(_img(7))[:-30])
    _write(tree / "dave" / "only.png", b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(CorruptImageError, match=r"bob/3\.jpg: truncated JPEG"):
        folders_to_recordio(tree, tmp_path / "strict.rec", progress=False)
    assert not list(tmp_path.glob("strict*")) and not list(tmp_path.glob(".strict*"))
    info = folders_to_recordio(tree, tmp_path / "lenient.rec", skip_corrupt=True, progress=False)
    assert [Path(p).name for p, _ in info["skipped"]] == ["3.jpg", "only.png"]
    assert info["dropped_classes"] == ["dave"] and info["class_names"] == ["alice", "bob", "carol"]
    assert info["num_images"] == 5 and info["num_classes"] == 3
    assert open_recordio(tmp_path / "lenient.rec").labels.tolist() == [0, 0, 1, 1, 2]


def test_class_dropped_in_the_middle_renumbers(tmp_path):
    root = tmp_path / "r"
    _write(root / "a" / "1.jpg", encode_jpeg(_img(0)))
    _write(root / "b" / "1.jpg", b"\xff\xd8 broken")
    _write(root / "c" / "1.jpg", encode_jpeg(_img(1)))
    info = folders_to_recordio(root, tmp_path / "t.rec", skip_corrupt=True, progress=False)
    assert info["class_names"] == ["a", "c"] and info["dropped_classes"] == ["b"]
    assert open_recordio(tmp_path / "t.rec").labels.tolist() == [0, 1]
    root2 = tmp_path / "all_bad"
    _write(root2 / "a" / "1.jpg", b"junk")
    with pytest.raises(EmptyFolderError, match="all 1 images were skipped"):
        folders_to_recordio(root2, tmp_path / "u.rec", skip_corrupt=True, progress=False)


def test_folders_to_recordio_with_an_image_policy(tree, tmp_path):
    """With a policy every image ends up policy.size square (the 16x16 tree enlarged to 24); a JPEG
    already at that size keeps its bytes; without one, sizes are kept (the tree stays 16x16)."""
    from marginlab.data.formats import ImagePolicy

    at_size = encode_jpeg(np.full((24, 24, 3), 90, np.uint8))
    _write(tree / "bob" / "0.jpg", at_size)
    _write(tree / "bob" / "9.jpg", encode_jpeg(np.full((30, 20, 3), 90, np.uint8))[:-2] + bytes(range(1, 17)) + b"\xff\xd9")
    info = folders_to_recordio(tree, tmp_path / "p.rec", policy=ImagePolicy(size=24, resize="pad"), progress=False)
    reader = open_recordio(tmp_path / "p.rec")
    assert {decode_image(reader[i][0]).shape for i in range(len(reader))} == {(24, 24, 3)}
    assert reader[2][0] == at_size  # bob/0.jpg: positions alice/a.png, alice/nested/b.jpeg, bob/0.jpg, ...
    assert (info["resized"], info["reencoded"]) == (6, 0)
    assert [(Path(p).name, "extraneous bytes" in m) for p, m in info["warnings"]] == [("9.jpg", True)]
    plain = folders_to_recordio(tree, tmp_path / "q.rec", progress=False)
    assert plain["resized"] == 0 and decode_image(open_recordio(tmp_path / "q.rec")[0][0]).shape == (16, 16, 3)


# ----------------------------------------------------------------- identification sets


def _tinyface(root: Path, probe: list[str], match: list[str], distractors: list[str] | None) -> None:
    for name in probe:
        _write(root / "Probe" / name, encode_jpeg(_img(0)))
    for name in match:
        _write(root / "Gallery_Match" / name, encode_jpeg(_img(1)))
    for name in distractors or []:
        _write(root / "Gallery_Distractor" / name, encode_jpeg(_img(2)))


def test_identification_set_numeric_ids(tmp_path):
    _tinyface(tmp_path, ["12_2.jpg", "3_1.jpg", "12_1.jpg"], ["3_5.jpg", "12_9.jpg", "40_1.png"], ["zzz.jpg", "0001.jpg"])
    parts = read_identification_set(tmp_path)
    assert list(parts) == ["Probe", "Gallery_Match", "Gallery_Distractor"]
    probe_paths, probe_labels = parts["Probe"]
    assert [p.name for p in probe_paths] == ["12_1.jpg", "12_2.jpg", "3_1.jpg"]  # sorted by name
    assert probe_labels.tolist() == [12, 12, 3]
    assert parts["Gallery_Match"][1].tolist() == [12, 3, 40]
    assert [p.name for p in parts["Gallery_Distractor"][0]] == ["0001.jpg", "zzz.jpg"]
    assert parts["Gallery_Distractor"][1].tolist() == [-1, -1]


def test_identification_set_named_ids_and_optional_distractors(tmp_path):
    _tinyface(tmp_path, ["jane_doe_1.jpg"], ["jane_doe_2.jpg", "bob_1.jpg"], None)
    parts = read_identification_set(tmp_path)
    # identity = stem up to the last underscore; names sorted: bob -> 0, jane_doe -> 1
    assert parts["Probe"][1].tolist() == [1]
    assert parts["Gallery_Match"][1].tolist() == [0, 1]
    assert parts["Gallery_Distractor"][0] == [] and parts["Gallery_Distractor"][1].shape == (0,)


def test_identification_set_errors(tmp_path):
    with pytest.raises(MissingFileError, match="identification-set part 'Probe' not found"):
        read_identification_set(tmp_path)
    a = tmp_path / "a"
    _tinyface(a, ["1_1.jpg"], ["2_1.jpg"], None)
    with pytest.raises(FolderFormatError, match=r"Probe/1_1\.jpg: probe identity '1' has no image in Gallery_Match"):
        read_identification_set(a)
    b = tmp_path / "b"
    _tinyface(b, ["noidentity.jpg"], ["1_1.jpg"], None)
    with pytest.raises(FolderFormatError, match=r"noidentity\.jpg: file name must be '<identity>_<k>.<ext>'"):
        read_identification_set(b)
    c = tmp_path / "c"
    (c / "Probe").mkdir(parents=True)
    _tinyface(c, [], ["1_1.jpg"], None)
    with pytest.raises(EmptyFolderError, match=r"c/Probe: no images"):
        read_identification_set(c)
