"""evaluate_prepared / run_evaluate end to end on a tiny prepared directory built with the format writers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from marginlab.core.config import EvaluateConfig, validate_params
from marginlab.data.model_input import to_model_input
from marginlab.data.formats import ARCFACE_TEMPLATE_112, encode_jpeg, write_bin, write_ijb_meta
from marginlab.evaluate import embed_images, evaluate_prepared, run_evaluate

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- fixtures
def face(identity: int, variant: int, *, contrast: float = 1.0) -> np.ndarray:
    """A 112x112 RGB 'face': an identity's 4x4 colour pattern, upscaled, plus a little per-variant noise."""
    pattern = np.random.default_rng(1000 + identity).integers(0, 256, (4, 4, 3)).astype(np.float64)
    img = cv2.resize(pattern, (112, 112), interpolation=cv2.INTER_LINEAR)
    img = img + np.random.default_rng(variant).normal(scale=4.0, size=img.shape)
    img = 128 + contrast * (img - 128)
    return np.clip(img, 0, 255).astype(np.uint8)


class PoolNet(nn.Module):
    """Deterministic stand-in backbone: 4x4 average pooling + a fixed linear map (16-D)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(48, 16)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


def write_pairs_bin(path: Path, contrast: float) -> None:
    images, issame = [], []
    for i in range(10):  # genuine: two variants of identity i
        images += [encode_jpeg(face(i, 1, contrast=contrast)), encode_jpeg(face(i, 2, contrast=contrast))]
        issame.append(True)
    for i in range(10):  # impostor: identities i and i+10
        images += [encode_jpeg(face(i, 3, contrast=contrast)), encode_jpeg(face(i + 10, 4, contrast=contrast))]
        issame.append(False)
    write_bin(path, images, np.array(issame))


def build_prepared(root: Path) -> Path:
    prepared = root / "prepared"
    (prepared / "verification").mkdir(parents=True)
    write_pairs_bin(prepared / "verification" / "hq.bin", 1.0)
    write_pairs_bin(prepared / "verification" / "lq.bin", 0.15)
    pd.DataFrame({"index": np.arange(40), "gt_quality": np.linspace(0, 1, 40)}).to_parquet(prepared / "verification" / "hq_meta.parquet")

    # IJB: 6 identities x 2 templates x 2 images; loose crops already aligned (landmarks = the template).
    ijb = prepared / "ijb" / "ijb_syn"
    (ijb / "loose_crop").mkdir(parents=True)
    rows, tid, mid = [], 0, 0
    for ident in range(6):
        for _t in range(2):
            tid += 1
            for k in range(2):
                mid += 1
                name = f"{ident}_{tid}_{k}.jpg"
                (ijb / "loose_crop" / name).write_bytes(encode_jpeg(face(ident, 10 * tid + k)))
                rows.append({"image": name, "tid": tid, "mid": mid, "landmarks": ARCFACE_TEMPLATE_112.reshape(-1).tolist(), "score": 0.9})
    faces = pd.DataFrame(rows)
    genuine = [(2 * i + 1, 2 * i + 2, 1) for i in range(6)]
    impostor = [(2 * i + 1, 2 * j + 2, 0) for i in range(6) for j in range(6) if i != j]
    write_ijb_meta(ijb, "ijb_syn", faces, pd.DataFrame(genuine + impostor, columns=["tid1", "tid2", "label"]))

    tiny = prepared / "tinyface"
    for part in ("Probe", "Gallery_Match", "Gallery_Distractor"):
        (tiny / part).mkdir(parents=True)
    for ident in range(8):
        (tiny / "Probe" / f"{ident}_0.jpg").write_bytes(encode_jpeg(cv2.resize(face(ident, 50), (40, 40), interpolation=cv2.INTER_AREA)))
        (tiny / "Gallery_Match" / f"{ident}_1.jpg").write_bytes(encode_jpeg(face(ident, 51)))
    for d in range(5):
        (tiny / "Gallery_Distractor" / f"distractor{d}.jpg").write_bytes(encode_jpeg(face(100 + d, 52)))
    return prepared


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny convolutions: one thread


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return build_prepared(tmp_path_factory.mktemp("eval"))


# --------------------------------------------------------------------------- evaluate_prepared
def test_evaluate_prepared_on_separable_data(prepared):
    cfg = EvaluateConfig(batch_size=7, fars=[1e-2, 1e-1], ranks=[1, 5])
    result = evaluate_prepared(PoolNet(), prepared, cfg=cfg, input_size=32, channel_order="BGR", device="cpu", progress=False)
    assert set(result.verification) == {"hq", "lq"}
    hq = result.verification["hq"]
    assert hq["pairs"] == 20 and hq["accuracy_mean"] == 1.0  # identities are far apart, variants close
    ijb = result.ijb["ijb_syn"]
    assert (ijb["fusion"], ijb["templates"], ijb["pairs"], ijb["genuine"], ijb["impostor"]) == ("norm", 12, 36, 6, 30)
    assert ijb["tar_at_far"] == {"1e-02": 1.0, "1e-01": 1.0}
    assert ijb["supported_fars"] == ["1e-01"]  # 30 impostor pairs resolve FAR 0.1 but not 0.01
    tiny = result.identification["tinyface"]
    assert (tiny["probes"], tiny["gallery"], tiny["distractors"]) == (8, 13, 5)
    assert tiny["rank1"] == 1.0 and tiny["rank5"] == 1.0

    roc = result.roc_frame()
    assert list(roc.columns) == ["protocol", "set", "fpr", "tpr", "threshold"]
    assert set(zip(roc["protocol"], roc["set"])) == {("verification", "hq"), ("verification", "lq"), ("ijb", "ijb_syn")}

    norms = result.norms_frame()
    counts = norms.groupby("split").size().to_dict()
    assert counts == {"bin:hq": 40, "bin:lq": 40, "ijb:ijb_syn": 24, "tinyface:Probe": 8, "tinyface:Gallery_Match": 8, "tinyface:Gallery_Distractor": 5}
    hq_rows = norms[norms["split"] == "bin:hq"]
    np.testing.assert_allclose(hq_rows["gt_quality"], np.linspace(0, 1, 40))
    assert norms.loc[norms["split"] == "bin:lq", "gt_quality"].isna().all()


def test_norms_are_of_the_flip_fused_embedding_computed_independently(prepared):
    from marginlab.data.formats import read_bin

    cfg = EvaluateConfig(batch_size=16)
    net = PoolNet().eval()
    result = evaluate_prepared(net, prepared, cfg=cfg, input_size=32, channel_order="RGB", device="cpu", progress=False)
    images, _ = read_bin(prepared / "verification" / "lq.bin")
    x = to_model_input(np.stack(images[:3]), 32, "RGB")
    with torch.no_grad():
        expected = torch.linalg.norm(net(x) + net(torch.flip(x, dims=[3])), dim=1).numpy()
    got = result.norms_frame().query("split == 'bin:lq'")["norm"].to_numpy()[:3]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_low_contrast_images_get_lower_norms_with_a_contrast_sensitive_net(prepared):
    # The linear map of (x - 0) has a norm that shrinks with the image's distance from mid-grey:
    # the lq set (contrast 0.15) must have smaller flip-fused norms than hq. Checks norms are per image.
    class Centered(nn.Module):
        def forward(self, x):
            return nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    cfg = EvaluateConfig(batch_size=64)
    result = evaluate_prepared(Centered(), prepared, cfg=cfg, input_size=32, device="cpu", progress=False)
    norms = result.norms_frame()
    assert norms.query("split == 'bin:lq'")["norm"].mean() < 0.5 * norms.query("split == 'bin:hq'")["norm"].mean()


def test_decoding_workers_give_identical_results(prepared):
    cfg = EvaluateConfig(batch_size=16, fars=[1e-1])
    serial = evaluate_prepared(PoolNet(), prepared, cfg=cfg, input_size=32, device="cpu", num_workers=0, progress=False)
    parallel = evaluate_prepared(PoolNet(), prepared, cfg=cfg, input_size=32, device="cpu", num_workers=1, progress=False)
    pd.testing.assert_frame_equal(serial.norms_frame(), parallel.norms_frame())
    assert serial.verification == parallel.verification and serial.identification == parallel.identification


def test_fusion_mode_is_named_in_the_output(prepared):
    cfg = EvaluateConfig(batch_size=64, fusion="mean", fars=[1e-1])
    result = evaluate_prepared(PoolNet(), prepared, cfg=cfg, input_size=32, device="cpu", progress=False)
    assert result.ijb["ijb_syn"]["fusion"] == "mean"


def test_missing_or_empty_prepared_dir(tmp_path):
    cfg = EvaluateConfig()
    with pytest.raises(FileNotFoundError, match="run the prepare stage first"):
        evaluate_prepared(PoolNet(), tmp_path / "nope", cfg=cfg, input_size=32, device="cpu")
    (tmp_path / "empty" / "verification").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="nothing to evaluate"):
        evaluate_prepared(PoolNet(), tmp_path / "empty", cfg=cfg, input_size=32, device="cpu")


def test_embed_images_accepts_arrays_generators_and_mixed_sizes():
    net = PoolNet()
    imgs = np.stack([face(i, 0) for i in range(5)])
    whole = embed_images(net, imgs, input_size=32, batch_size=2, device="cpu", progress=False)
    gen = embed_images(net, (im for im in imgs), input_size=32, batch_size=3, device="cpu", progress=False)
    np.testing.assert_allclose(whole, gen, rtol=1e-5, atol=1e-6)  # batch size changes BLAS rounding only
    mixed = [face(0, 0), cv2.resize(face(1, 0), (40, 40))]
    assert embed_images(net, [mixed], input_size=32, device="cpu", progress=False).shape == (2, 16)
    no_flip = embed_images(net, imgs[:1], input_size=32, flip=False, device="cpu", progress=False)
    assert not np.allclose(no_flip, whole[:1])
    assert net.training  # the caller's mode is restored
    with pytest.raises(ValueError, match="no images"):
        embed_images(net, iter([]), input_size=32, device="cpu", progress=False)


def test_channels_last_embeddings_match_contiguous_ones():
    """evaluate.channels_last changes the memory layout, not the result (an IR-ResNet, as trained)."""
    from marginlab.backbones import build_backbone

    torch.manual_seed(0)
    net = build_backbone("ir_18", embedding_size=32, input_size=32, width=0.25)
    imgs = np.stack([face(i, 0) for i in range(6)])
    kw = dict(input_size=32, batch_size=4, device="cpu", progress=False)
    plain = embed_images(net, imgs, channels_last=False, **kw)
    fast = embed_images(net, imgs, channels_last=True, **kw)
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5 * np.abs(plain).max())
    assert EvaluateConfig().channels_last and EvaluateConfig().batch_size == 128


# --------------------------------------------------------------------------- run_evaluate (real model file)
def tiny_params(root: Path, prepared: Path) -> dict:
    return {
        "data": {"prepared_dir": str(prepared), "channel_order": "BGR"},
        "quality": {"output_dir": str(root / "quality")},
        "model": {"backbone": "ir_18", "width": 0.125, "embedding_size": 16, "input_size": 16},
        "runs": {"tiny": {"head": "adaface", "tags": ["main"]}},
        "evaluate": {"batch_size": 32, "fars": [1e-2, 1e-1]},
        "runs_dir": str(root / "runs"),
    }


def save_tiny_model(params, run: str = "tiny") -> None:
    from marginlab.models import build_modules, save_model

    resolved = params.run(run)
    torch.manual_seed(0)
    backbone, head = build_modules(resolved, num_classes=20)
    save_model(
        Path(params.runs_dir) / run / "model.pt",
        backbone_state=backbone.state_dict(),
        head_state=head.state_dict(),
        resolved=resolved,
        num_classes=20,
        channel_order="BGR",
        epoch=1,
        selection="last",
    )


def test_evaluate_run_writes_metrics_roc_and_norms(prepared, tmp_path):
    raw = tiny_params(tmp_path, prepared)
    params = validate_params(raw)
    save_tiny_model(params)
    scores = pd.DataFrame({"split": "bin:hq", "index": np.arange(40), "brisque": 100.0 - np.arange(40), "iq": np.arange(40) / 100})
    (tmp_path / "quality").mkdir()
    scores.to_parquet(tmp_path / "quality" / "scores.parquet")

    metrics = run_evaluate(params, "tiny", device="cpu", progress=False)
    run_dir = tmp_path / "runs" / "tiny"
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert set(on_disk) == {"run", "head", "label", "tags", "epoch", "selection", "protocol", "verification", "ijb", "identification", "summary"}
    assert (on_disk["run"], on_disk["head"], on_disk["tags"], on_disk["epoch"]) == ("tiny", "adaface", ["main"], 1)
    assert on_disk["protocol"] == {"flip": True, "fusion": "norm", "channel_order": "BGR", "input_size": 16, "fars": ["1e-02", "1e-01"], "ranks": [1, 5]}
    for name in ("hq", "lq"):
        v = on_disk["verification"][name]
        assert {"accuracy_mean", "accuracy_std", "threshold_mean", "pairs"} <= set(v) and v["pairs"] == 20
    assert set(on_disk["ijb"]["ijb_syn"]["tar_at_far"]) == {"1e-02", "1e-01"}
    assert on_disk["identification"]["tinyface"]["probes"] == 8
    s = on_disk["summary"]
    assert set(s) == {"hq_accuracy", "lq_accuracy", "verification_mean_accuracy", "ijb_tar_at_1e-04", "tinyface_rank1", "tinyface_rank5"}
    assert s["hq_accuracy"] == on_disk["verification"]["hq"]["accuracy_mean"]
    assert s["ijb_tar_at_1e-04"] is None  # 1e-4 is not among the evaluated FARs

    norms = pd.read_parquet(run_dir / "eval_norms.parquet")
    assert list(norms.columns) == ["split", "index", "norm", "iq", "brisque", "gt_quality"]
    hq = norms[norms["split"] == "bin:hq"].sort_values("index")
    np.testing.assert_allclose(hq["iq"], np.arange(40) / 100)
    assert norms.loc[norms["split"] != "bin:hq", "iq"].isna().all()
    assert (norms["norm"] > 0).all()
    roc = pd.read_parquet(run_dir / "roc.parquet")
    assert set(roc["set"]) == {"hq", "lq", "ijb_syn"}
    # the wall time lives beside metrics.json, not in it (metrics stay deterministic)
    timing = json.loads((run_dir / "eval_timing.json").read_text())
    assert timing["stage"] == "evaluate@tiny" and timing["device"] == "cpu" and timing["wall_time_s"] > 0
    assert timing["images"] == len(norms)


def test_evaluate_run_errors(prepared, tmp_path):
    params = validate_params(tiny_params(tmp_path, prepared))
    from marginlab.core.config import ConfigError
    from marginlab.models import ModelFileError

    with pytest.raises(ConfigError, match="not in params 'runs'"):
        run_evaluate(params, "other", device="cpu")
    with pytest.raises(ModelFileError, match="model.pt not found"):
        run_evaluate(params, "tiny", device="cpu")
    save_tiny_model(params)
    bad = {**tiny_params(tmp_path, prepared), "quality": {"output_dir": str(tmp_path / "q")}}
    (tmp_path / "q").mkdir()
    pd.DataFrame({"split": ["bin:hq"], "index": [0]}).to_parquet(tmp_path / "q" / "scores.parquet")
    with pytest.raises(ValueError, match=r"scores.parquet lacks column\(s\) \['brisque', 'iq'\]"):
        run_evaluate(validate_params(bad), "tiny", device="cpu", progress=False)
    assert not (tmp_path / "runs" / "tiny" / "metrics.json").exists()  # nothing half-written
    assert not (tmp_path / "runs" / "tiny" / "eval_timing.json").exists()  # no timing of a failed run


@pytest.mark.slow
def test_stage_cli(prepared, tmp_path):
    import yaml

    import shutil

    shutil.copytree(prepared, tmp_path / "prepared")  # the path policy: the project (cwd) holds what a stage uses
    raw = tiny_params(tmp_path, tmp_path / "prepared")
    save_tiny_model(validate_params(raw))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "marginlab", "evaluate", "tiny", "--params", str(tmp_path / "params.yaml"), "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["run"] == "tiny"
    assert (tmp_path / "runs" / "tiny" / "metrics.json").exists()
    bad = subprocess.run(cmd[:4] + ["nope"] + cmd[5:], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "not in params 'runs'" in bad.stderr
