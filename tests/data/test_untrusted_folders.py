"""Symlinks in untrusted identity-folder trees and identification sets (issue #21, point 5).

A link may only point inside the data root, and every folder and image may be reached once; the
trees are written with cv2.imencode and os.symlink, the way a user's or an attacker's tree would be.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from marginlab.data.formats import FolderFormatError, folders_to_recordio, list_image_folder, read_identification_set

REPO = Path(__file__).resolve().parents[2]


def _jpeg(value: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((8, 8, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def _tree(root: Path, files: dict[str, int]) -> Path:
    for rel, value in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_jpeg(value))
    return root


@pytest.fixture
def root(tmp_path) -> Path:
    # resolved, so the targets in the messages (real paths) read as the paths written here
    return _tree(tmp_path.resolve() / "faces", {"alice/a.jpg": 10, "alice/sub/b.jpg": 20, "bob/c.jpg": 30})


def test_class_folder_linked_to_the_root_is_refused(root):
    R = re.escape(str(root))
    os.symlink(".", root / "zz")  # would list alice's and bob's images again under class 'zz'
    with pytest.raises(FolderFormatError, match=rf"^{R}: {R}/zz \(through the link {R}/zz -> {R}\) is a symlink loop: "
                                                r"it leads back to the data root itself"):
        list_image_folder(root)


def test_links_pointing_outside_the_root_are_refused(root, tmp_path):
    R = re.escape(str(root))
    outside = _tree(tmp_path.resolve() / "elsewhere", {"x/1.jpg": 40, "y.jpg": 50})
    O = re.escape(str(outside))
    os.symlink(outside / "x", root / "carol")  # a class folder
    with pytest.raises(FolderFormatError, match=rf"{R}: {R}/carol -> {O}/x points outside the data root \({R}\)"):
        list_image_folder(root)
    (root / "carol").unlink()
    os.symlink(outside / "y.jpg", root / "bob" / "y.jpg")  # one image
    with pytest.raises(FolderFormatError, match=rf"{R}: {R}/bob/y.jpg -> {O}/y.jpg points outside the data root"):
        folders_to_recordio(root, tmp_path / "t.rec", progress=False)
    assert not (tmp_path / "t.rec").exists()


def test_symlink_loops_are_refused(root):
    R = re.escape(str(root))
    os.symlink("..", root / "alice" / "sub" / "up")  # back to alice, which contains it
    with pytest.raises(FolderFormatError, match=rf"{R}/alice/sub/up \(through the link .* -> {R}/alice\) is a symlink loop: "
                                                rf"it leads back to {R}/alice, which contains it"):
        list_image_folder(root)
    (root / "alice" / "sub" / "up").unlink()
    os.symlink("self", root / "self")  # a link to itself: never resolves
    with pytest.raises(FolderFormatError, match=rf"{R}: {R}/self -> self is a symlink loop"):
        list_image_folder(root)


def test_one_file_reached_twice_is_refused(root):
    R = re.escape(str(root))
    os.symlink("../alice/a.jpg", root / "bob" / "a.jpg")  # one image under two labels
    with pytest.raises(FolderFormatError, match=rf"{R}/bob/a.jpg \(through the link {R}/bob/a.jpg -> {R}/alice/a.jpg\) is the "
                                                rf"same file as {R}/alice/a.jpg .*not under 'alice' and 'bob'"):
        list_image_folder(root)
    (root / "bob" / "a.jpg").unlink()
    os.symlink("a.jpg", root / "alice" / "again.jpg")  # twice in one class
    with pytest.raises(FolderFormatError, match=r"alice/again.jpg .* is the same file as .*alice/a.jpg .*'alice' and 'alice'"):
        list_image_folder(root)
    (root / "alice" / "again.jpg").unlink()
    os.symlink("bob", root / "carol")  # a class folder linked to another class
    with pytest.raises(FolderFormatError, match=rf"{R}/carol \(through the link .*\) is the folder {R}/bob reached a second time"):
        list_image_folder(root)


def test_links_inside_the_root_that_duplicate_nothing_keep_working(root):
    _tree(root, {".store/dave/d.jpg": 60, ".store/more/e.jpg": 70})
    os.symlink(".store/dave", root / "dave")  # a class folder kept in a hidden store
    os.symlink("../../.store/more", root / "alice" / "sub" / "more")  # a nested folder
    paths, labels, names = list_image_folder(root)
    assert names == ["alice", "bob", "dave"]
    assert [p.relative_to(root).as_posix() for p in paths] == ["alice/a.jpg", "alice/sub/b.jpg", "alice/sub/more/e.jpg", "bob/c.jpg",
                                                               "dave/d.jpg"]
    assert labels.tolist() == [0, 0, 0, 1, 2]


def test_identification_set_links_follow_the_same_rule(tmp_path):
    root = _tree(tmp_path.resolve() / "tiny", {"Probe/1_1.jpg": 1, "Gallery_Match/1_2.jpg": 2, "Gallery_Distractor/d.jpg": 3})
    R, T = re.escape(str(root)), re.escape(str(tmp_path.resolve()))
    os.symlink("../Gallery_Match/1_2.jpg", root / "Gallery_Distractor" / "e.jpg")  # a genuine match counted as a distractor
    with pytest.raises(FolderFormatError, match=r"Gallery_Distractor/e.jpg .* is the same file as .*Gallery_Match/1_2.jpg .*"
                                                r"not under 'Gallery_Match' and 'Gallery_Distractor'"):
        read_identification_set(root)
    (root / "Gallery_Distractor" / "e.jpg").unlink()
    os.symlink(_tree(tmp_path / "pool", {"p.jpg": 4}), root / "Gallery_Distractor" / "pool")
    with pytest.raises(FolderFormatError, match=rf"{R}: .*Gallery_Distractor/pool -> {T}/pool points outside the data root"):
        read_identification_set(root)
    (root / "Gallery_Distractor" / "pool").unlink()
    os.symlink("..", root / "Gallery_Distractor" / "up")
    with pytest.raises(FolderFormatError, match=r"Gallery_Distractor/up .* is a symlink loop: it leads back to the data root itself"):
        read_identification_set(root)


def test_prepare_stage_reports_a_refused_link_as_one_error_line(root, tmp_path, capsys):
    from pipeline_helpers import stage_command

    stage = stage_command("prepare")
    os.symlink(root, root / "zz")
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"data": {"source": "folders", "train_folders": str(root)}}))
    assert stage.main(["--params", str(params), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: data.train_folders: {root}: {root}/zz ") and "symlink loop" in err[0]
    assert not (tmp_path / "out").exists()
