"""data.subset_index: the paper's Table 1 subset, selected in torchvision ImageFolder order as the official code does.

The official rule (github mk-minchul/AdaFace: data.py ``subset_ms1mv2_dataset``, convert.py
``save_rec_to_img_dir``) is restated in :func:`_official` below; the selection from a ``.rec`` and from
the folder AdaFace's converter makes of it must give the same images with the same labels.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marginlab.core.config import ConfigError, validate_params
from marginlab.data.formats import (
    CorruptImageError,
    EmptyFolderError,
    MissingFileError,
    RecordIOError,
    encode_jpeg,
    open_recordio,
    write_recordio,
)
from marginlab.data.prepare import run_prepare
from marginlab.data.prepare.subset import (
    SubsetIndexError,
    imagefolder_samples,
    read_subset_index,
    recordio_imagefolder_order,
    select_subset,
)


def _params(**data):
    data.setdefault("image_size", 16)
    return validate_params({"seed": 1, "data": data}, source="test")


def _write(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --------------------------------------------------------------------------- ordering
def test_imagefolder_order_of_a_folder_tree(tmp_path):
    root = tmp_path / "imgs"
    for rel in ["0/1.jpg", "0/10.jpg", "0/2.jpg", "0/notes.txt", "1/b.PNG", "1/a.jpeg", "1/README",
                "10/3.jpg", "2/2.jpg", "2/.hidden.jpg", "2/sub/1.jpg", "2/sub-x/0.jpg", "2/sub/deeper/5.jpg",
                ".cache/x.jpg"]:
        _write(root / rel)
    paths, targets, classes = imagefolder_samples(root)
    # Hand-written: class folders as strings ("." < digits; "1" < "10" < "2"), hidden names included;
    # files by name; sub-folders by walk-root path string ("2/sub" < "2/sub-x" < "2/sub/deeper").
    assert classes == [".cache", "0", "1", "10", "2"]
    assert [p.relative_to(root).as_posix() for p in paths] == [
        ".cache/x.jpg",
        "0/1.jpg", "0/10.jpg", "0/2.jpg",
        "1/a.jpeg", "1/b.PNG",
        "10/3.jpg",
        "2/.hidden.jpg", "2/2.jpg", "2/sub/1.jpg", "2/sub-x/0.jpg", "2/sub/deeper/5.jpg",
    ]
    assert targets.tolist() == [0, 1, 1, 1, 2, 2, 3, 4, 4, 4, 4, 4]
    folder = pytest.importorskip("torchvision.datasets.folder")
    _, class_to_idx = folder.find_classes(str(root))
    samples = folder.make_dataset(str(root), class_to_idx, extensions=folder.IMG_EXTENSIONS)
    assert [(Path(p), t) for p, t in samples] == list(zip(paths, targets.tolist()))


def test_imagefolder_refuses_an_empty_class(tmp_path):
    _write(tmp_path / "0" / "1.jpg")
    _write(tmp_path / "1" / "notes.txt")
    with pytest.raises(EmptyFolderError, match=r"class folder .*1 holds no image"):
        imagefolder_samples(tmp_path)


def test_recordio_order_is_the_converter_folder_order():
    # convert.py writes record key k of label l to imgs/<l>/<k>.jpg (k is the global key, from 1)
    keys = np.arange(1, 14)
    labels = np.array([0] * 10 + [1, 2, 10])
    positions, classes_of, classes = recordio_imagefolder_order(keys, labels)
    assert classes == ["0", "1", "10", "2"]
    # "0": 1.jpg, 10.jpg, 2.jpg ... 9.jpg; then "1": 11.jpg; "10": 13.jpg; "2": 12.jpg
    assert positions.tolist() == [0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 11]
    assert classes_of.tolist() == [0] * 10 + [1, 2, 3]
    names = sorted(f"{k}.jpg" for k in range(1, 11))  # the same as Python's string sort of the names
    assert [f"{keys[p]}.jpg" for p in positions[:10]] == names


# --------------------------------------------------------------------------- the <5 rule
def _official(targets: list[int], indices: list[int]) -> list[tuple[int, int]]:
    """The official subset rule, restated: ``(sample, label)`` in index-file order, labels by its adjuster."""
    chosen = [(i, targets[i]) for i in indices]
    counts = Counter(t for _, t in chosen)
    erased = {t for t, c in counts.items() if c < 5}
    kept = [(i, t) for i, t in chosen if t not in erased]
    top = max(t for _, t in kept)
    adjust, new = {}, 0
    for orig in range(top + 1):
        if orig not in erased:
            adjust[orig] = new
            new += 1
    return [(i, adjust[t]) for i, t in kept]


def test_select_drops_identities_under_five_and_relabels(tmp_path):
    #          class: 0  1  2  3  4  5
    sizes = np.array([6, 5, 7, 4, 6, 5])
    targets = np.repeat(np.arange(6), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pick = {0: 6, 1: 5, 2: 0, 3: 4, 4: 4, 5: 5}  # class 2 unselected; 3 and 4 under five
    indices = np.concatenate([starts[c] + np.arange(k) for c, k in pick.items()])[::-1]
    sel = select_subset(indices, targets, 6, path=tmp_path / "idx.txt", source="test")
    assert sel.kept_classes.tolist() == [0, 1, 5]
    assert sel.dropped_classes.tolist() == [3, 4] and sel.dropped_images == 8
    assert sel.samples.tolist() == sorted(np.concatenate([starts[0] + np.arange(6), starts[1] + np.arange(5),
                                                          starts[5] + np.arange(5)]).tolist())
    assert sel.labels.tolist() == [0] * 6 + [1] * 5 + [2] * 5
    # the official adjuster gives the unselected class 2 a number too: 0, 1, (2), 3 -> one slot more
    official = _official(targets.tolist(), indices.tolist())
    assert sel.official_label_slots == max(t for _, t in official) + 1 == 4
    rank = {t: r for r, t in enumerate(sorted({t for _, t in official}))}
    assert sorted((i, rank[t]) for i, t in official) == list(zip(sel.samples.tolist(), sel.labels.tolist()))


# --------------------------------------------------------------------------- .rec and folder tree
SIZES = [7, 5, 4, 6, 5, 5, 3, 5, 6, 5, 12]  # images of labels 0..10; keys 1..63 in label order
PICK = {"0": 7, "1": 5, "10": 9, "2": 4, "3": 5, "4": 0, "5": 5, "6": 3, "7": 5, "8": 6, "9": 0}
NEW_LABEL = {"0": 0, "1": 1, "10": 2, "3": 3, "5": 4, "7": 5, "8": 6}  # kept, in string order


@pytest.fixture(scope="module")
def ms1m_like(tmp_path_factory):
    """A tiny InsightFace .rec (labels 0..10) and the folder convert.py makes of it, and an index file."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(SIZES)), SIZES)
    images = [encode_jpeg(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in labels]
    write_recordio(root / "train.rec", list(zip(images, labels.tolist())), with_header=True)
    for key, (data, label) in enumerate(zip(images, labels.tolist()), start=1):
        _write(root / "imgs" / str(label) / f"{key}.jpg", data)
    paths, targets, classes = imagefolder_samples(root / "imgs")
    indices = []
    for c, name in enumerate(classes):
        members = np.flatnonzero(targets == c)
        indices += rng.permutation(members)[: PICK[name]].tolist()
    indices = rng.permutation(indices).tolist()  # the file's order does not matter
    text = ",".join(map(str, indices))
    (root / "subset.txt").write_text(text)
    return {"root": root, "images": images, "labels": labels, "paths": paths, "targets": targets, "indices": indices}


def _records(rec: Path) -> list[tuple[bytes, int]]:
    with open_recordio(rec) as reader:
        return [reader[i] for i in range(len(reader))]


def test_rec_and_folder_tree_give_the_same_subset(ms1m_like, tmp_path):
    root = ms1m_like["root"]
    m_rec = run_prepare(_params(source="recordio", train_rec=str(root / "train.rec"), subset_index=str(root / "subset.txt")),
                        tmp_path / "from_rec", progress=False)
    m_dir = run_prepare(_params(source="folders", train_folders=str(root / "imgs"), subset_index=str(root / "subset.txt")),
                        tmp_path / "from_dir", progress=False)
    got = _records(tmp_path / "from_rec" / "train.rec")
    assert got == _records(tmp_path / "from_dir" / "train.rec")
    assert m_rec["files"]["train.rec"] == m_dir["files"]["train.rec"]
    # what the official code trains on: ImageFolder of the converted tree, the index list, its rule
    paths, targets = ms1m_like["paths"], ms1m_like["targets"].tolist()
    official = _official(targets, ms1m_like["indices"])
    rank = {t: r for r, t in enumerate(sorted({t for _, t in official}))}
    expected = sorted((i, rank[t]) for i, t in official)
    assert got == [(paths[i].read_bytes(), label) for i, label in expected]
    assert [NEW_LABEL[p.parent.name] for p in (paths[i] for i, _ in expected)] == [lab for _, lab in got]
    for out in ("from_rec", "from_dir"):
        classes = pd.read_parquet(tmp_path / out / "train_classes.parquet")
        assert classes["class_name"].tolist() == list(NEW_LABEL) and classes["label"].tolist() == list(range(7))
        meta = pd.read_parquet(tmp_path / out / "train_meta.parquet")
        assert meta["label"].tolist() == [lab for _, lab in got]


def test_manifest_records_the_subset(ms1m_like, tmp_path):
    root = ms1m_like["root"]
    index_file = root / "subset.txt"
    m = run_prepare(_params(source="recordio", train_rec=str(root / "train.rec"), subset_index=str(index_file)),
                    tmp_path / "p", progress=False)
    s = m["subset"]
    assert s["path"] == str(index_file) == m["sources"]["subset_index"]
    assert s["sha256"] == hashlib.sha256(index_file.read_bytes()).hexdigest() and s["bytes"] == index_file.stat().st_size
    assert s["indices"] == len(ms1m_like["indices"]) == 49
    assert (s["source_images"], s["source_identities"]) == (63, 11)
    assert (s["selected_images"], s["selected_identities"]) == (42, 7) == (s["written_images"], s["written_identities"])
    assert (s["dropped_identities"], s["dropped_images"], s["dropped_identity_names"]) == (2, 7, ["2", "6"])
    assert s["official_label_slots"] == 8  # "4" is unselected but below the last kept class "8"
    assert s["min_images_per_identity"] == 5
    assert (m["counts"]["train_images"], m["counts"]["train_classes"]) == (42, 7)
    assert m["counts"]["train_ingest"]["ingest"] == "subset"
    assert set(m["files"]) >= {"train.rec", "train.idx", "train_meta.parquet", "train_classes.parquet"}
    plain = run_prepare(_params(source="recordio", train_rec=str(root / "train.rec")), tmp_path / "q", progress=False)
    assert plain["subset"] is None and "subset_index" not in plain["sources"]


# --------------------------------------------------------------------------- bad input
def test_index_file_separators(tmp_path):
    f = tmp_path / "idx.txt"
    f.write_text("0, 1,\n2 3\n4,\n")
    assert read_subset_index(f).tolist() == [0, 1, 2, 3, 4]
    f.write_text("7,3,5")  # the official format: one line, commas
    assert read_subset_index(f).tolist() == [7, 3, 5]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"1,2,abc", r"entry 3 \('abc'\) is not a non-negative integer"),
        (b"1.5", r"entry 1 \('1.5'\) is not a non-negative integer"),
        (b"3,-1", r"entry 2 is negative \(-1\)"),
        (b"4,7,4", r"index 4 appears more than once \(entries 1 and 3"),
        (b"1,,2", r"empty entry after entry 1"),
        (b",1", r"empty entry after entry 0"),
        (b"", r"holds no index"),
        (b" \n", r"holds no index"),
        (b"1,\xff", r"not a text file of integers"),
    ],
)
def test_bad_index_file(tmp_path, content, message):
    f = tmp_path / "idx.txt"
    f.write_bytes(content)
    with pytest.raises(SubsetIndexError, match=message) as err:
        read_subset_index(f)
    assert str(f) in str(err.value) and str(err.value).startswith("data.subset_index: ")


def test_index_out_of_range_and_missing_file(ms1m_like, tmp_path):
    root = ms1m_like["root"]
    f = tmp_path / "idx.txt"
    f.write_text("0,1,2,3,4,63,64")
    with pytest.raises(SubsetIndexError, match=r"index 63 \(entry 6\) is out of range: .* has 63 images .*0\.\.62.*2 entries") as err:
        run_prepare(_params(source="recordio", train_rec=str(root / "train.rec"), subset_index=str(f)), tmp_path / "p", progress=False)
    assert str(f) in str(err.value)
    with pytest.raises(MissingFileError, match=r"data.subset_index: file .*nope.txt not found"):
        run_prepare(_params(source="folders", train_folders=str(root / "imgs"), subset_index=str(tmp_path / "nope.txt")),
                    tmp_path / "p", progress=False)
    f.write_text("0,1,2,3")  # one identity, four images
    with pytest.raises(SubsetIndexError, match=r"no identity has 5 or more selected images"):
        run_prepare(_params(source="folders", train_folders=str(root / "imgs"), subset_index=str(f)), tmp_path / "p", progress=False)
    assert not (tmp_path / "p").exists()


def test_headerless_rec_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    write_recordio(tmp_path / "train.rec", [(encode_jpeg(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)), 0)] * 5,
                   with_header=False)
    (tmp_path / "idx.txt").write_text("0,1,2,3,4")
    with pytest.raises(RecordIOError, match="no InsightFace header record"):
        run_prepare(_params(source="recordio", train_rec=str(tmp_path / "train.rec"), subset_index=str(tmp_path / "idx.txt")),
                    tmp_path / "p", progress=False)


def test_corrupt_selected_image(ms1m_like, tmp_path):
    src = ms1m_like["root"] / "imgs"
    tree = tmp_path / "imgs"
    for p in src.rglob("*.jpg"):
        _write(tree / p.relative_to(src), p.read_bytes())
    bad = ms1m_like["paths"][ms1m_like["indices"][0]]
    (tree / bad.relative_to(src)).write_bytes(b"\xff\xd8 not a jpeg")
    params = {"source": "folders", "train_folders": str(tree), "subset_index": str(ms1m_like["root"] / "subset.txt")}
    with pytest.raises(CorruptImageError, match=rf"data.train_folders: .*{bad.parent.name}/{bad.name}"):
        run_prepare(_params(**params), tmp_path / "p", progress=False)
    m = run_prepare(_params(**params, skip_corrupt=True), tmp_path / "p", progress=False)
    assert [Path(s["source"]).relative_to(tree) for s in m["skipped"]] == [bad.relative_to(src)]
    assert m["counts"]["train_images"] == 41 and m["subset"]["selected_images"] == 42


def test_config_needs_a_real_source():
    with pytest.raises(ConfigError, match="data.subset_index .* needs data.source 'recordio' or 'folders', not 'synthetic'"):
        validate_params({"data": {"subset_index": "data/x.txt"}})
    with pytest.raises(ConfigError, match="data.subset_index"):
        validate_params({"data": {"source": "recordio", "train_rec": "t.rec", "subset_index": ""}})
    p = validate_params({"data": {"source": "recordio", "train_rec": "t.rec", "subset_index": "data/x.txt"}})
    assert p.data.subset_index == "data/x.txt" and validate_params({}).data.subset_index is None
