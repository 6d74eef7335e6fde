"""IJB-B / IJB-C style 1:1 verification sets: meta files, reader and aligned-face loading.

Layout (as released with InsightFace's IJB evaluation)::

    root/loose_crop/<image>                       loose face crops
    root/meta/{name}_face_tid_mid.txt             "<image> <template id> <media id>"   one line per face
    root/meta/{name}_name_5pts_score.txt          "<image> x1 y1 ... x5 y5 <detector score>"  same order
    root/meta/{name}_template_pair_label.txt      "<tid1> <tid2> <label 0/1>"           one line per pair

A prepared copy of a real set does not duplicate the crops (IJB-C has about 470k): instead of
``loose_crop/`` it holds ``image_dir.json`` = ``{"image_dir": path}`` naming where they are (relative
to ``root`` when the crops live inside the project, absolute otherwise); :func:`image_dir_of` resolves
either. (A symlink would not do: DVC neither hashes nor restores symlinks inside an output.)

Fields are separated by single spaces.  The two face files list the same images in the same order
(row i of both is face i).  Landmarks are pixel coordinates in the loose crop in the order left eye,
right eye, nose, left and right mouth corner; :meth:`IJBSet.load_aligned` warps face i to the ArcFace
112x112 template with :func:`marginlab.data.formats.five_point_alignment.align_face`.  Images are returned RGB ``uint8``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from marginlab.data.formats.errors import IJBFormatError, MissingFileError
from marginlab.data.formats.five_point_alignment import align_face
from marginlab.data.formats.images import DEFAULT_MAX_IMAGE_PIXELS, decode_image
from marginlab.core.io import atomic_path

__all__ = ["IMAGE_DIR_FILE", "IJBSet", "ijb_meta_paths", "image_dir_of", "read_ijb", "write_image_dir_ref", "write_ijb_meta"]

_FACE_COLUMNS = ["image", "tid", "mid", "landmarks", "score"]
_PAIR_COLUMNS = ["tid1", "tid2", "label"]


def ijb_meta_paths(root: str | Path, name: str) -> dict[str, Path]:
    """Paths of the three meta files of set ``name`` under ``root/meta``."""
    meta = Path(root) / "meta"
    return {
        "face_tid_mid": meta / f"{name}_face_tid_mid.txt",
        "template_pair_label": meta / f"{name}_template_pair_label.txt",
        "name_5pts_score": meta / f"{name}_name_5pts_score.txt",
    }


#: A prepared set's reference to its crops (instead of a ``loose_crop/`` directory).
IMAGE_DIR_FILE = "image_dir.json"


def write_image_dir_ref(root: str | Path, image_dir: str | Path, project_root: str | Path,
                        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Path:
    """Write ``root/image_dir.json`` naming ``image_dir`` (relative to ``root`` when inside ``project_root``) and
    the largest image its readers decode (``data.max_image_pixels`` at prepare: the crops are read later, by
    quality and evaluate, whose params do not include the data section)."""
    root, image_dir = Path(root), Path(image_dir).resolve()
    inside = image_dir.is_relative_to(Path(project_root).resolve())
    value = os.path.relpath(image_dir, root.resolve()) if inside else str(image_dir)
    path = root / IMAGE_DIR_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"image_dir": value, "max_image_pixels": int(max_pixels)}) + "\n")
    return path


def max_pixels_of(root: str | Path) -> int:
    """The image-size limit ``image_dir.json`` records (the default for sets without one, e.g. synthetic)."""
    ref = Path(root) / IMAGE_DIR_FILE
    if not ref.is_file():
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = json.loads(ref.read_text()).get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)
    except (json.JSONDecodeError, AttributeError) as err:
        raise IJBFormatError(f"{ref}: expected {{\"image_dir\": path, \"max_image_pixels\": n}} ({err})") from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise IJBFormatError(f"{ref}: max_image_pixels must be a positive integer, got {value!r}")
    return value


def image_dir_of(root: str | Path) -> Path:
    """Where set ``root``'s crops are: ``root/loose_crop`` if present, else what ``image_dir.json`` names."""
    root = Path(root)
    crops = root / "loose_crop"
    ref = root / IMAGE_DIR_FILE
    if crops.is_dir() or not ref.is_file():
        return crops
    try:
        value = json.loads(ref.read_text())["image_dir"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise IJBFormatError(f"{ref}: expected {{\"image_dir\": path}} ({err})") from None
    path = Path(value)
    return path if path.is_absolute() else root / path


@dataclasses.dataclass
class IJBSet:
    """A parsed IJB-style set.

    ``faces``: DataFrame (image str, tid int64, mid int64, landmarks: float32 array (10,) per row
    as x1, y1, ..., x5, y5, score float64); ``pairs``: DataFrame (tid1, tid2 int64, label int8 0/1).
    """

    root: Path
    name: str
    faces: pd.DataFrame
    pairs: pd.DataFrame
    _landmarks: np.ndarray = dataclasses.field(repr=False, default=None)  # (N, 5, 2) float32
    _image_dir: Path | None = dataclasses.field(repr=False, default=None)
    _max_pixels: int | None = dataclasses.field(repr=False, default=None)

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def landmarks(self) -> np.ndarray:
        """All landmarks as a float32 array (N, 5, 2)."""
        if self._landmarks is None:
            self._landmarks = np.stack(self.faces["landmarks"].to_list()).astype(np.float32).reshape(-1, 5, 2)
        return self._landmarks

    @property
    def image_dir(self) -> Path:
        """Directory of the loose crops (:func:`image_dir_of`)."""
        if self._image_dir is None:
            self._image_dir = image_dir_of(self.root)
        return self._image_dir

    def image_path(self, i: int) -> Path:
        """Path of face ``i``'s loose crop."""
        return self.image_dir / str(self.faces["image"].iat[int(i)])

    def load_image(self, i: int) -> np.ndarray:
        """The loose crop of face ``i`` (RGB ``uint8``)."""
        path = self.image_path(i)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            meta = ijb_meta_paths(self.root, self.name)["face_tid_mid"]
            raise MissingFileError(f"{path}: image of face {i} (line {int(i) + 1} of {meta}) not found") from None
        if self._max_pixels is None:
            self._max_pixels = max_pixels_of(self.root)
        return decode_image(data, source=str(path), max_pixels=self._max_pixels)

    def load_aligned(self, i: int, size: int = 112) -> np.ndarray:
        """Face ``i`` aligned to the ArcFace template: RGB ``uint8`` (size, size, 3), black border."""
        return align_face(self.load_image(i), self.landmarks[int(i)], size=size)


# ---------------------------------------------------------------------------------------- writing


def _check_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise IJBFormatError(f"write_ijb_meta: {what} lacks column(s) {missing}; expected {columns}")


def _landmark_matrix(values: pd.Series, where: str) -> np.ndarray:
    rows = []
    for i, value in enumerate(values.to_list()):
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        if arr.size != 10 or not np.all(np.isfinite(arr)):
            raise IJBFormatError(f"{where}: row {i}: landmarks must be 10 finite numbers (5 x,y points), got {value!r}")
        rows.append(arr)
    return np.stack(rows) if rows else np.zeros((0, 10))


def _as_int_column(values: pd.Series, where: str, column: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        try:
            as_float = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise IJBFormatError(f"{where}: column '{column}' must hold integers") from None
        if not np.all(np.isfinite(as_float)) or not np.all(as_float == np.round(as_float)):
            raise IJBFormatError(f"{where}: column '{column}' must hold integers")
        arr = as_float.astype(np.int64)
    return arr.astype(np.int64)


def write_ijb_meta(root: str | Path, name: str, faces: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, Path]:
    """Write the three IJB meta files of set ``name`` under ``root/meta`` (atomically, each file).

    ``faces``: columns image (path relative to ``root/loose_crop``, no whitespace), tid, mid,
    landmarks (10 numbers x1, y1, ..., x5, y5, or a (5, 2) array), score.  ``pairs``: tid1, tid2,
    label (0/1); every tid must be a template of ``faces``.  Images are not written here.
    Returns the paths written.
    """
    _check_columns(faces, _FACE_COLUMNS, "faces")
    _check_columns(pairs, _PAIR_COLUMNS, "pairs")
    if len(faces) == 0:
        raise IJBFormatError(f"write_ijb_meta: no faces for set '{name}'")
    images = faces["image"].astype(str)
    bad = images.str.contains(r"\s", regex=True) | (images == "")
    if bad.any():
        raise IJBFormatError(f"write_ijb_meta: faces row {int(np.flatnonzero(bad)[0])}: image name {images[bad].iloc[0]!r} is empty or contains whitespace")
    tid = _as_int_column(faces["tid"], "write_ijb_meta faces", "tid")
    mid = _as_int_column(faces["mid"], "write_ijb_meta faces", "mid")
    landmarks = _landmark_matrix(faces["landmarks"], "write_ijb_meta faces")
    score = np.asarray(faces["score"], dtype=np.float64)
    t1 = _as_int_column(pairs["tid1"], "write_ijb_meta pairs", "tid1")
    t2 = _as_int_column(pairs["tid2"], "write_ijb_meta pairs", "tid2")
    label = _as_int_column(pairs["label"], "write_ijb_meta pairs", "label")
    _check_pairs(t1, t2, label, tid, "write_ijb_meta pairs")

    paths = ijb_meta_paths(root, name)
    tables = {
        "face_tid_mid": pd.DataFrame({"image": images.to_numpy(), "tid": tid, "mid": mid}),
        "name_5pts_score": pd.concat(
            [pd.DataFrame({"image": images.to_numpy()}), pd.DataFrame(landmarks), pd.DataFrame({"score": score})], axis=1
        ),
        "template_pair_label": pd.DataFrame({"tid1": t1, "tid2": t2, "label": label}),
    }
    for key, table in tables.items():
        with atomic_path(paths[key]) as tmp:
            # default float formatting is repr(): shortest text that round-trips float64 exactly
            table.to_csv(tmp, sep=" ", header=False, index=False, lineterminator="\n")
    return paths


def _check_pairs(t1: np.ndarray, t2: np.ndarray, label: np.ndarray, tids: np.ndarray, where: str) -> None:
    bad_label = ~np.isin(label, (0, 1))
    if bad_label.any():
        i = int(np.flatnonzero(bad_label)[0])
        raise IJBFormatError(f"{where}: line {i + 1}: label must be 0 or 1, got {int(label[i])}")
    known = np.unique(tids)
    for column, values in (("tid1", t1), ("tid2", t2)):
        unknown = ~np.isin(values, known)
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise IJBFormatError(f"{where}: line {i + 1}: {column} {int(values[i])} is not a template of any face")


# ---------------------------------------------------------------------------------------- reading


def _read_table(path: Path, dtypes: list, what: str) -> pd.DataFrame:
    """Read a whitespace-separated headerless table with exactly ``len(dtypes)`` columns.

    The fast pandas C parser reads the file; on any failure the file is re-scanned line by line to
    name the first offending line in the error.
    """
    if not path.is_file():
        raise MissingFileError(f"{path}: IJB {what} file not found")
    try:
        frame = pd.read_csv(
            path,
            sep=r"\s+",
            header=None,
            dtype=dict(enumerate(dtypes)),
            engine="c",
            na_filter=False,
        )
    except pd.errors.EmptyDataError:
        raise IJBFormatError(f"{path}: empty IJB {what} file") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise IJBFormatError(f"{path}: {_first_bad_line(path, dtypes)} ({what}; {exc})") from None
    if frame.shape[1] != len(dtypes):
        raise IJBFormatError(f"{path}: {_first_bad_line(path, dtypes)} ({what})")
    return frame


def _first_bad_line(path: Path, dtypes: list) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != len(dtypes):
                return f"line {lineno}: expected {len(dtypes)} space-separated fields, found {len(fields)}"
            for field, dtype in zip(fields, dtypes):
                if dtype is str:
                    continue
                if np.dtype(dtype).kind == "f":
                    try:
                        ok = math.isfinite(float(field))
                    except ValueError:
                        ok = False
                    if not ok:
                        return f"line {lineno}: field {field!r} is not a finite number"
                else:
                    try:
                        int(field)
                    except ValueError:
                        return f"line {lineno}: field {field!r} is not an integer"
    return "malformed file"


def read_ijb(root: str | Path, name: str) -> IJBSet:
    """Read the meta files of set ``name`` under ``root`` (see module docstring) into an :class:`IJBSet`.

    Checks that the two face files agree line by line, that landmarks and scores are finite, and that
    every pair references known templates with a 0/1 label; errors name the file and line.
    """
    root = Path(root)
    paths = ijb_meta_paths(root, name)
    tid_mid = _read_table(paths["face_tid_mid"], [str, np.int64, np.int64], "face/template/media")
    pts = _read_table(paths["name_5pts_score"], [str] + [np.float64] * 11, "name/5 points/score")
    pairs_raw = _read_table(paths["template_pair_label"], [np.int64, np.int64, np.int64], "template pair/label")
    if len(tid_mid) != len(pts):
        raise IJBFormatError(
            f"{paths['name_5pts_score']}: {len(pts)} faces but {paths['face_tid_mid'].name} lists {len(tid_mid)}; "
            f"the two files must list the same faces in the same order"
        )
    differ = tid_mid[0].to_numpy() != pts[0].to_numpy()
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise IJBFormatError(
            f"{paths['name_5pts_score']}: line {i + 1}: image {pts[0].iat[i]!r} differs from "
            f"{tid_mid[0].iat[i]!r} on the same line of {paths['face_tid_mid'].name}"
        )
    values = pts[list(range(1, 12))].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        line = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0]) + 1
        raise IJBFormatError(f"{paths['name_5pts_score']}: line {line}: landmarks and score must be finite numbers")
    landmarks = values[:, :10].astype(np.float32)
    tid = tid_mid[1].to_numpy(dtype=np.int64)
    t1, t2, label = (pairs_raw[c].to_numpy(dtype=np.int64) for c in (0, 1, 2))
    _check_pairs(t1, t2, label, tid, str(paths["template_pair_label"]))
    faces = pd.DataFrame(
        {
            "image": tid_mid[0].astype(str).to_numpy(),
            "tid": tid,
            "mid": tid_mid[2].to_numpy(dtype=np.int64),
            "landmarks": list(landmarks),
            "score": values[:, 10],
        }
    )
    pairs = pd.DataFrame({"tid1": t1, "tid2": t2, "label": label.astype(np.int8)})
    return IJBSet(root=root, name=name, faces=faces, pairs=pairs, _landmarks=landmarks.reshape(-1, 5, 2))
