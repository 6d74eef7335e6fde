"""Fake but schema-faithful pipeline outputs for analysis/report tests (no training, no images).

``build_fixture_tree(root)`` writes, under ``root``::

    params.yaml                         a small grid (DEFAULT_RUNS) with relative output dirs
    runs/<run>/probe/epoch_XX.parquet   probe rows (marginlab.train.probe.PROBE_COLUMNS), epochs 0..E
    runs/<run>/metrics.json             marginlab.evaluate.stage schema (hq/lq bins, ijb_syn, tinyface)
    runs/<run>/eval_timing.json         marginlab.core.timing record (7.5 s)
    runs/<run>/eval_norms.parquet       split, index, norm, iq, brisque, gt_quality
    runs/<run>/roc.parquet              protocol, set, fpr, tpr, threshold
    runs/<run>/train_summary.json       marginlab.train summary keys (sizes from the run's train overrides:
                                        identities, default 25, × 8 images; epochs; batch 32)
    runs/<run>/live/metrics.json        + live/plots/metrics/{train,head}/*.tsv (dvclive layout)
    quality/scores.parquet, quality/summary.json
    prepared/manifest.json, prepared/samples.png, prepared/train_meta.parquet

Effects are planted so analyses have known answers: the clean-pass feature norm rises with the
image's ground-truth quality with a strength growing over epochs (``norm_quality_strength``; 0 at
epoch 0), IQ is ground truth plus noise, P_yi saturates with quality, augmented images lose a factor
``augment_norm_factor`` of their norm, and each label's benchmark values come from
``performance[label]`` plus seed noise ``seed_noise`` (percentage points / 100).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

PROBE_COLUMNS = ("epoch", "pass", "index", "label", "norm", "p_yi", "cos_y", "iq", "gt_quality",
                 "crop", "lowres", "photometric", "flip")

DEFAULT_RUNS: dict[str, dict[str, Any]] = {
    "adaface-s0": {"head": "adaface", "seed": 0, "tags": ["main", "ablation_h", "ablation_m", "ablation_proxy"]},
    "adaface-s1": {"head": "adaface", "seed": 1, "tags": ["main", "ablation_h", "ablation_m", "ablation_proxy"]},
    "cosface-s0": {"head": "cosface", "seed": 0, "tags": ["main"]},
    "cosface-s1": {"head": "cosface", "seed": 1, "tags": ["main"]},
    "curricularface-s0": {"head": "curricularface", "seed": 0, "tags": ["main", "ablation_h"]},
    "curricularface-s1": {"head": "curricularface", "seed": 1, "tags": ["main", "ablation_h"]},
    "adaface-h022-s0": {"head": "adaface", "head_params": {"h": 0.22}, "seed": 0, "tags": ["ablation_h"]},
    "adaface-h066-s0": {"head": "adaface", "head_params": {"h": 0.66}, "seed": 0, "tags": ["ablation_h"]},
    "adaface-m05-s0": {"head": "adaface", "head_params": {"m": 0.5}, "seed": 0, "tags": ["ablation_m"]},
    "adaface-brisque-s0": {"head": "adaface", "proxy": "brisque", "seed": 0, "tags": ["ablation_proxy"]},
}

#: Accuracy / TAR / rank-1 (fractions) per label; AdaFace ahead on the low-quality protocols only (equal on hq).
DEFAULT_PERFORMANCE: dict[str, dict[str, float]] = {
    "adaface": {"hq": 0.950, "lq": 0.820, "tar": 0.700, "rank1": 0.600},
    "cosface": {"hq": 0.950, "lq": 0.780, "tar": 0.650, "rank1": 0.550},
    "curricularface": {"hq": 0.950, "lq": 0.785, "tar": 0.660, "rank1": 0.560},
    "adaface-h022": {"hq": 0.948, "lq": 0.800, "tar": 0.680, "rank1": 0.580},
    "adaface-h066": {"hq": 0.949, "lq": 0.790, "tar": 0.670, "rank1": 0.570},
    "adaface-m05": {"hq": 0.950, "lq": 0.810, "tar": 0.690, "rank1": 0.590},
    "adaface-brisque": {"hq": 0.947, "lq": 0.770, "tar": 0.640, "rank1": 0.540},
}

VERIFICATION_PAIRS = 600
IJB_GENUINE, IJB_IMPOSTOR = 80, 6320
TINYFACE_PROBES = 120


def _label(name: str) -> str:
    import re

    return re.sub(r"-s\d+$", "", name)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True))


def probe_frames(
    run: str,
    seed: int,
    *,
    epochs: int,
    probe_size: int,
    norm_quality_strength: float,
    augment_norm_factor: float,
    aug_p: float = 0.2,
    with_gt: bool = True,
    with_iq: bool = True,
) -> list[pd.DataFrame]:
    """Probe tables of one run for epochs 0..epochs (clean and augmented pass each)."""
    rng = np.random.default_rng([seed, zlib.crc32(run.encode())])
    n = probe_size
    index = np.sort(rng.choice(10 * n, size=n, replace=False)).astype(np.int64)
    labels = (index % 25).astype(np.int32)
    gt = rng.uniform(0.0, 1.0, n).astype(np.float32)
    iq = np.clip(gt + rng.normal(0, 0.15, n), 0, 1).astype(np.float32)
    flags = rng.random((n, 4)) < np.array([aug_p, aug_p, aug_p, 0.5])
    any_aug = flags[:, :3].any(axis=1)
    frames = []
    for epoch in range(epochs + 1):
        progress = epoch / max(epochs, 1)
        base = 12.0 + 8.0 * norm_quality_strength * progress * gt + rng.normal(0, 1.0, n)
        base = np.maximum(base, 0.5)
        p_yi = np.clip(1.0 - np.exp(-8.0 * progress * (gt + 0.05)) + rng.normal(0, 0.02, n), 1e-4, 1.0)
        cos_y = np.clip(0.2 + 0.6 * progress * gt + rng.normal(0, 0.05, n), -1, 1)
        for pass_ in ("clean", "augmented"):
            norm = base if pass_ == "clean" else base * np.where(any_aug, augment_norm_factor, 1.0) * rng.normal(1, 0.01, n)
            frame = pd.DataFrame({
                "epoch": np.full(n, epoch, dtype=np.int32),
                "pass": pass_,
                "index": index,
                "label": labels,
                "norm": norm.astype(np.float32),
                "p_yi": p_yi.astype(np.float32),
                "cos_y": cos_y.astype(np.float32),
                "iq": iq if with_iq else np.full(n, np.nan, np.float32),
                "gt_quality": gt if with_gt else np.full(n, np.nan, np.float32),
            })
            for k, flag in enumerate(("crop", "lowres", "photometric", "flip")):
                frame[flag] = flags[:, k] if pass_ == "augmented" else np.zeros(n, dtype=bool)
            frames.append(frame)
    return frames


def metrics_json(run: str, spec: Mapping[str, Any], perf: Mapping[str, float], rng: np.random.Generator,
                 seed_noise: float, epochs: int) -> dict[str, Any]:
    """A metrics.json (marginlab.evaluate.stage schema) with values perf[...] + N(0, seed_noise)."""
    def noisy(v: float) -> float:
        return float(np.clip(v + rng.normal(0, seed_noise), 0, 1))

    ver = {}
    for name in ("hq", "lq"):
        acc = noisy(perf[name])
        folds = np.clip(acc + rng.normal(0, 0.01, 10), 0, 1)
        ver[name] = {"accuracy_mean": float(folds.mean()), "accuracy_std": float(folds.std()), "threshold_mean": 1.2,
                     "pairs": VERIFICATION_PAIRS, "fold_accuracies": folds.tolist(), "fold_thresholds": [1.2] * 10,
                     "val_at_far": {"1e-03": 0.5}}
    tar = noisy(perf["tar"])
    ijb = {"ijb_syn": {"fusion": "norm", "tar_at_far": {"1e-04": tar - 0.05, "1e-03": tar, "1e-02": min(1.0, tar + 0.1)},
                       "supported_fars": ["1e-03", "1e-02"], "templates": 80, "pairs": IJB_GENUINE + IJB_IMPOSTOR,
                       "genuine": IJB_GENUINE, "impostor": IJB_IMPOSTOR}}
    r1 = noisy(perf["rank1"])
    ident = {"tinyface": {"rank1": r1, "rank5": min(1.0, r1 + 0.1), "probes": TINYFACE_PROBES, "probes_without_match": 0,
                          "gallery": 240, "distractors": 200}}
    return {
        "run": run, "head": spec["head"], "label": spec.get("label") or _label(run), "tags": list(spec.get("tags", [])),
        "epoch": epochs, "selection": "last",
        "protocol": {"flip": True, "fusion": "norm", "channel_order": "BGR", "input_size": 64,
                     "fars": ["1e-04", "1e-03", "1e-02"], "ranks": [1, 5]},
        "verification": ver, "ijb": ijb, "identification": ident,
        "summary": {"hq_accuracy": ver["hq"]["accuracy_mean"], "lq_accuracy": ver["lq"]["accuracy_mean"],
                    "verification_mean_accuracy": (ver["hq"]["accuracy_mean"] + ver["lq"]["accuracy_mean"]) / 2,
                    "ijb_tar_at_1e-04": None, "tinyface_rank1": r1, "tinyface_rank5": min(1.0, r1 + 0.1)},
    }


def write_live(live_dir: Path, rng: np.random.Generator, epochs: int, head: str) -> None:
    """dvclive-like history: live/metrics.json and live/plots/metrics/<group>/<name>.tsv (step 0..epochs)."""
    steps = np.arange(1, epochs + 1)
    series = {
        "train/loss": 20.0 * np.exp(-0.4 * steps) + rng.normal(0, 0.1, len(steps)),
        "train/acc": 1 - np.exp(-0.5 * steps),
        "train/lr": 0.1 * 0.1 ** (steps > 0.6 * epochs),
        "train/norm_mean": 12 + 2 * steps + rng.normal(0, 0.2, len(steps)),
    }
    if head == "adaface":
        series["head/batch_mean"] = series["train/norm_mean"] * 0.99
    latest: dict[str, Any] = {"step": int(epochs)}
    for name, values in series.items():
        path = live_dir / "plots" / "metrics" / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": 1700000000000 + steps, "step": steps, name.split("/")[-1]: values}).to_csv(path, sep="\t", index=False)
        group, key = name.split("/")
        latest.setdefault(group, {})[key] = float(values[-1])
    _write_json(live_dir / "metrics.json", latest)


def _png(path: Path) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((32, 64, 3), dtype=np.uint8)
    img[:, :32] = (40, 120, 200)
    cv2.imwrite(str(path), img)


def build_fixture_tree(
    root: str | Path,
    *,
    runs: Mapping[str, Mapping[str, Any]] | None = None,
    performance: Mapping[str, Mapping[str, float]] | None = None,
    epochs: int = 3,
    probe_size: int = 150,
    seed_noise: float = 0.002,
    norm_quality_strength: float = 1.0,
    run_strength: Mapping[str, float] | None = None,
    augment_norm_factor: float = 0.75,
    with_gt: bool = True,
    with_iq: bool = True,
    skip: Sequence[str] = (),
    seed: int = 42,
) -> Path:
    """Write the fake tree (module docstring) under ``root``; return the path of its params.yaml.

    ``skip``: names of runs listed in params.yaml whose outputs are not written (a missing run);
    ``run_strength``: per-run ``norm_quality_strength`` overrides (e.g. one growing with the run's size).
    """
    root = Path(root)
    runs = dict(DEFAULT_RUNS if runs is None else runs)
    performance = dict(DEFAULT_PERFORMANCE if performance is None else performance)
    params = {
        "seed": seed,
        "data": {"prepared_dir": "prepared"},
        "quality": {"output_dir": "quality"},
        "runs_dir": "runs",
        "train": {"epochs": epochs, "probe_size": probe_size},
        "runs": {name: dict(spec) for name, spec in runs.items()},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for name, spec in runs.items():
        if name in skip:
            continue
        label = spec.get("label") or _label(name)
        run_dir = root / "runs" / name
        rng = np.random.default_rng([seed, int(spec.get("seed", 0)), zlib.crc32(name.encode())])
        strength = (run_strength or {}).get(name, norm_quality_strength if spec["head"] != "normface" else 0.0)
        size = run_size(spec, epochs)
        for frame in _split_epochs(probe_frames(name, int(spec.get("seed", 0)), epochs=size["epochs"], probe_size=probe_size,
                                                norm_quality_strength=strength, augment_norm_factor=augment_norm_factor,
                                                with_gt=with_gt, with_iq=with_iq)):
            epoch = int(frame["epoch"].iloc[0])
            path = run_dir / "probe" / f"epoch_{epoch:02d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame = frame.copy()
            frame["pass"] = frame["pass"].astype("category")
            frame.to_parquet(path, index=False)
        perf = performance.get(label, performance.get(spec["head"], DEFAULT_PERFORMANCE["cosface"]))
        _write_json(run_dir / "metrics.json", metrics_json(name, spec, perf, rng, seed_noise, epochs))
        _write_json(run_dir / "eval_timing.json", {"stage": f"evaluate@{name}", "wall_time_s": 7.5, "device": "cpu"})
        n_eval = 40
        gt = rng.uniform(0, 1, 2 * n_eval)
        iq = np.clip(gt + rng.normal(0, 0.1, 2 * n_eval), 0, 1)
        pd.DataFrame({
            "split": ["bin:hq"] * n_eval + ["bin:lq"] * n_eval, "index": np.r_[np.arange(n_eval), np.arange(n_eval)],
            "norm": 12 + 6 * gt + rng.normal(0, 0.5, 2 * n_eval), "iq": iq if with_iq else np.nan,
            "brisque": 100 * (1 - iq) if with_iq else np.nan, "gt_quality": gt if with_gt else np.nan,
        }).to_parquet(run_dir / "eval_norms.parquet", index=False)
        fpr = np.linspace(0, 1, 11)
        pd.DataFrame({"protocol": "verification", "set": "lq", "fpr": fpr, "tpr": np.sqrt(fpr), "threshold": 1 - fpr}
                     ).to_parquet(run_dir / "roc.parquet", index=False)
        write_live(run_dir / "live", rng, epochs, spec["head"])
        _write_json(run_dir / "train_summary.json", {
            "run": name, "head": spec["head"], "proxy": spec.get("proxy", "norm"), "backbone": "ir_18", **size,
            "selection": "last", "selected_epoch": size["epochs"], "final_loss": 1.0, "final_acc": 0.9, "final_norm_mean": 20.0,
            "images_per_s": 500.0, "train_seconds": 10.0, "wall_time_s": 12.0, "seed": int(spec.get("seed", 0)),
            "device": "cpu", "amp": "off", "head_state": {"batch_mean": 20.0, "batch_std": 2.0} if spec["head"] == "adaface" else {},
        })
    _write_quality(root / "quality", rng=np.random.default_rng(seed), n=200, with_gt=with_gt)
    prepared = root / "prepared"
    _write_json(prepared / "manifest.json", {
        "channel_order": "BGR", "decoded_channel_order": "RGB", "normalisation": "(x/255 - 0.5) / 0.5",
        "sources": {"train": "synthetic"}, "counts": {"train_images": 200, "train_classes": 25}, "skipped": [],
        "files": {}, "links": {},
    })
    _png(prepared / "samples.png")
    rng = np.random.default_rng(seed + 1)
    pd.DataFrame({"index": np.arange(200), "label": np.arange(200) % 25, "gt_quality": rng.uniform(0, 1, 200),
                  "degradations": ""}).to_parquet(prepared / "train_meta.parquet", index=False)
    return root / "params.yaml"


def run_size(spec: Mapping[str, Any], epochs: int) -> dict[str, int]:
    """The train_summary.json size keys of a fake run: ``train.identities`` (default 25) × 8 images, its
    ``train.epochs`` (default ``epochs``), batch 32 with the last partial batch dropped."""
    train = spec.get("train") or {}
    identities, run_epochs = int(train.get("identities") or 25), int(train.get("epochs", epochs))
    images = 8 * identities
    return {"epochs": run_epochs, "num_classes": identities, "train_identities": identities, "train_images": images,
            "batch_size": 32, "steps_per_epoch": images // 32, "global_steps": run_epochs * (images // 32)}


def _split_epochs(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    merged = pd.concat(frames, ignore_index=True)
    return [g[list(PROBE_COLUMNS)].reset_index(drop=True) for _, g in merged.groupby("epoch", sort=True)]


def _write_quality(out: Path, rng: np.random.Generator, n: int, with_gt: bool) -> None:
    from marginlab.quality.summary import summarize_scores

    out.mkdir(parents=True, exist_ok=True)
    gt = rng.uniform(0, 1, n)
    brisque = np.clip(100 * (1 - gt) + rng.normal(0, 10, n), -10, 120)
    scores = pd.DataFrame({"split": "train", "index": np.arange(n), "brisque": brisque,
                           "iq": 1 - np.clip(brisque, 0, 100) / 100})
    scores.to_parquet(out / "scores.parquet", index=False)
    truth = pd.DataFrame({"split": "train", "index": np.arange(n), "gt_quality": gt, "degradations": ""}) if with_gt else None
    _write_json(out / "summary.json", summarize_scores(scores, truth))
