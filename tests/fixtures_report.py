"""A small, complete set of stage outputs for the report tests.

``build_report_tree(root)`` writes, under ``root``:

- ``params.yaml``, ``runs/``, ``quality/``, ``prepared/`` from the analysis engineer's
  :func:`fixtures_runs.build_fixture_tree` (schema-faithful fake runs);
- ``quality/summary.json`` rewritten with degraded images (so the per-degradation Spearman table has
  values), through the real :func:`marginlab.quality.summary.summarize_scores`;
- ``prepared/samples.png``: a colourful 320×160 grid;
- ``analysis/`` with hand-made CSV/JSON in the analysis stage's documented schema (values below, so the
  tests know what the HTML must show) and small PNG figures; ``scale.csv`` / ``scale_fit.json`` from the
  real :mod:`marginlab.analysis.scale` on the hand-made correlations and :data:`SCALE_SUMMARIES`;
- ``analysis/gst/`` from the real gst code on a coarse grid (:func:`write_gst_outputs`);
- ``dvc.lock`` with two stages.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from fixtures_runs import DEFAULT_RUNS, build_fixture_tree

# ---------------------------------------------------------------------------------------------------- values
COMPARISON = pd.DataFrame([
    # label, head, protocol, quality, mean, std, n_seeds, delta, ci_lo, ci_hi, p, test, n_pairs, paper_value, paper_setting
    ("adaface", "adaface", "verification/hq", "high", 95.1943, 0.232797, 2, 0.0, np.nan, np.nan, np.nan, "reference", 2, np.nan, ""),
    ("cosface", "cosface", "verification/hq", "high", 94.9612, 0.111, 2, -0.2331, -1.321, 0.855, 0.2197, "paired t-test", 2, np.nan, ""),
    ("curricularface", "curricularface", "verification/hq", "high", 95.5811, 0.1049, 2, 0.3868, -2.65, 3.43, 0.351, "paired t-test", 2,
     np.nan, ""),
    ("adaface", "adaface", "verification/lq", "low", 81.9493, 0.911941, 2, 0.0, np.nan, np.nan, np.nan, "reference", 2, np.nan, ""),
    ("cosface", "cosface", "verification/lq", "low", 77.7601, 0.1631, 2, -4.1892, -10.92, 2.54, 0.0803, "paired t-test", 2, np.nan, ""),
    ("curricularface", "curricularface", "verification/lq", "low", 77.9650, 0.1471, 2, -3.9843, -10.81, 2.84, 0.0854, "paired t-test", 2,
     np.nan, ""),
    ("adaface", "adaface", "ijb/ijb_syn TAR@FAR=1e-03", "low", 70.025, 0.129496, 2, 0.0, np.nan, np.nan, np.nan, "reference", 2, np.nan, ""),
    ("cosface", "cosface", "ijb/ijb_syn TAR@FAR=1e-03", "low", 64.8577, 0.0712, 2, -5.1673, -6.94, -3.39, 0.0172, "paired t-test", 2,
     np.nan, ""),
    ("curricularface", "curricularface", "ijb/ijb_syn TAR@FAR=1e-03", "low", 66.2301, 0.2702, 2, -3.7949, -5.04, -2.55, 0.0164,
     "paired t-test", 1, np.nan, ""),
    ("adaface", "adaface", "identification/tinyface rank1", "low", 59.8912, 0.2401, 2, 0.0, np.nan, np.nan, np.nan, "reference", 2, 68.21,
     "R100 MS1MV2, TinyFace rank-1"),
    ("cosface", "cosface", "identification/tinyface rank1", "low", 55.0504, 0.0404, 2, -4.8408, -7.37, -2.31, 0.0262, "paired t-test", 2,
     np.nan, ""),
    ("curricularface", "curricularface", "identification/tinyface rank1", "low", 55.7806, np.nan, 1, -4.1106, np.nan, np.nan, np.nan,
     "n/a", 1, 63.68, "R100 MS1MV2, TinyFace rank-1"),
], columns=["label", "head", "protocol", "quality", "mean", "std", "n_seeds", "delta_vs_adaface", "ci_lo", "ci_hi", "p_value",
            "test", "n_pairs", "paper_value", "paper_setting"])

ABLATION = pd.DataFrame([
    ("h", "h=0.22", "adaface-h022", False, "verification/lq", 79.7568, np.nan, 1),
    ("h", "h=0.333", "adaface", True, "verification/lq", 81.9493, 0.911941, 2),
    ("h", "h=0.66", "adaface-h066", False, "verification/lq", 78.6349, np.nan, 1),
    ("h", "h=0.22", "adaface-h022", False, "identification/tinyface rank1", 58.3333, np.nan, 1),
    ("h", "h=0.333", "adaface", True, "identification/tinyface rank1", 59.8912, 0.2401, 2),
    ("h", "h=0.66", "adaface-h066", False, "identification/tinyface rank1", 56.9583, np.nan, 1),
    ("m", "m=0.4", "adaface", True, "verification/lq", 81.9493, 0.911941, 2),
    ("m", "m=0.5", "adaface-m05", False, "verification/lq", 81.1821, np.nan, 1),
    ("proxy", "proxy=norm", "adaface", True, "verification/lq", 81.9493, 0.911941, 2),
    ("proxy", "proxy=brisque", "adaface-brisque", False, "verification/lq", 76.1588, np.nan, 1),
    ("baseline", "CurricularFace", "curricularface", False, "verification/lq", 77.9650, 0.1471, 2),
], columns=["factor", "setting", "label", "is_reference", "set", "mean", "std", "n_seeds"])

CORRELATION_RUNS = {"adaface-s0": ("adaface", "adaface"), "adaface-s1": ("adaface", "adaface"),
                    "cosface-s0": ("cosface", "cosface")}


def correlation_frame(epochs: int = 3) -> pd.DataFrame:
    rows = []
    for k, (run, (label, head)) in enumerate(CORRELATION_RUNS.items()):
        for epoch in range(epochs + 1):
            for pass_ in ("clean", "augmented"):
                for quantity in ("norm", "p_yi"):
                    for target in ("iq", "gt_quality"):
                        base = 0.1 + 0.2 * epoch + 0.01 * k + (0.05 if target == "gt_quality" else 0.0)
                        base -= 0.1 if quantity == "p_yi" else 0.0
                        base -= 0.05 if pass_ == "augmented" else 0.0
                        rows.append((run, label, head, epoch, pass_, quantity, target, round(base, 6), round(base - 0.07, 6),
                                     round(base + 0.06, 6), round(base + 0.012345, 6), round(base - 0.06, 6),
                                     round(base + 0.07, 6), 150))
    return pd.DataFrame(rows, columns=["run", "label", "head", "epoch", "pass", "quantity", "target", "pearson", "pearson_lo",
                                       "pearson_hi", "spearman", "spearman_lo", "spearman_hi", "n"])


def augmentation_frame() -> pd.DataFrame:
    rows = []
    for run, (label, head) in CORRELATION_RUNS.items():
        for b in range(1, 6):
            share = 0.9 - 0.2 * (b - 1)
            rows.append((run, label, head, 3, b, 8.0 + 2 * b, 10.0 + 2 * b, share / 2, share / 3, share / 4, share, 30))
    return pd.DataFrame(rows, columns=["run", "label", "head", "epoch", "norm_bin", "norm_min", "norm_max", "share_crop",
                                       "share_lowres", "share_photometric", "share_any", "n"])


#: train_summary.json size keys of the correlation runs (curricularface-s0 has none: skipped by the scale table).
SCALE_SUMMARIES = {
    "adaface-s0": {"num_classes": 25, "train_images": 200, "epochs": 3, "global_steps": 18, "batch_size": 32},
    "adaface-s1": {"num_classes": 50, "train_images": 400, "epochs": 3, "global_steps": 36, "batch_size": 32},
    "cosface-s0": {"num_classes": 25, "train_images": 200, "epochs": 3, "global_steps": 18, "batch_size": 32},
}


def zhat_values(run: str, epoch: int, n: int = 60) -> np.ndarray:
    """Hand-made ẑ of one AdaFace run's clean probe at one epoch: spreading with the epochs, clipped at ±1."""
    rng = np.random.default_rng([epoch, len(run)])
    return np.clip(rng.normal(0.05 * epoch, 0.1 + 0.3 * epoch, n), -1, 1).astype(np.float32)


def zhat_frame(epochs: int = 3) -> pd.DataFrame:
    """``zhat.csv`` of every AdaFace run of :data:`DEFAULT_RUNS` (the real :func:`marginlab.analysis.zhat.zhat_table`)."""
    from fixtures_runs import run_size

    from marginlab.analysis.zhat import zhat_table

    frames = []
    for run, spec in DEFAULT_RUNS.items():
        if spec["head"] != "adaface":
            continue
        label = run.rsplit("-s", 1)[0]
        for epoch in range(epochs + 1):
            frames.append(pd.DataFrame({"run": run, "label": label, "head": "adaface", "epoch": epoch, "pass": "clean",
                                        "z_hat": zhat_values(run, epoch)}))
    summaries = {run: run_size(spec, epochs) for run, spec in DEFAULT_RUNS.items()}
    return zhat_table(pd.concat(frames, ignore_index=True), None, summaries)


def write_scale(analysis: Path) -> None:
    """``scale.csv``, ``scale_fit.json`` (the real scale code on :func:`correlation_frame`) and a scale PNG."""
    from marginlab.analysis import scale as sc
    from marginlab.analysis import scale_fit as sf

    runs = pd.DataFrame([{"run": r, "label": lab, "head": h} for r, (lab, h) in CORRELATION_RUNS.items()]
                        + [{"run": "curricularface-s0", "label": "curricularface", "head": "curricularface"}])
    table, skipped = sc.scale_table(correlation_frame(), runs, SCALE_SUMMARIES)
    table.to_csv(analysis / "scale.csv", index=False)
    (analysis / "scale_fit.json").write_text(json.dumps(sf.scale_summary(sc.fit_trends(table), skipped, 0.95)))
    _png(analysis / "figures" / sc.SCALE_FIGURE, (90, 90, 90))


CLAIMS = {
    "reference": "adaface",
    "reference_runs": ["adaface-s0", "adaface-s1"],
    "missing": [],
    "claims": [
        {"id": 1, "title": "Feature norm as a quality proxy", "statement": "The feature norm correlates with IQ.",
         "paper": "Fig. 2; about 0.5235", "verdict": "supported", "rule": "all parts supported → supported",
         "numbers": {"final_spearman_mean": 0.7246, "paper_correlation": 0.5235},
         "decision": {"to_supported_se": 0.62, "to_not_supported_se": -9.1, "distance_se": 0.62, "borderline": True},
         "parts": [{"name": "a: final epoch", "verdict": "supported", "rule": "CI above 0",
                    "numbers": {"runs": {"adaface-s0": {"spearman": 0.7123, "spearman_ci": [0.65, 0.77]}}},
                    "decision": {"to_supported_se": 0.62, "to_not_supported_se": -9.1, "distance_se": 0.62,
                                 "borderline": True}},
                   {"name": "b: early = end of epoch 1", "verdict": "inconclusive", "rule": "seed-level t test at epoch 1",
                    "numbers": {"mean_spearman": 0.1234,
                                "curve": [{"progress": 0.0, "step": 0, "spearman": 0.01},
                                          {"progress": 0.3333, "step": 6, "spearman": 0.1234},
                                          {"progress": 1.0, "step": 18, "spearman": 0.7123}]}}]},
        {"id": 2, "title": "Margin form controls sample emphasis", "statement": "AdaFace emphasises <b>hard</b> samples at high norm.",
         "paper": "Fig. 3", "verdict": "not supported", "rule": "ratios", "numbers": {},
         "decision": {"to_supported_se": None, "to_not_supported_se": None, "distance_se": None, "borderline": False,
                      "deciding": "analytic: exact, no sampling noise"},
         "parts": [{"name": "a: emphasis ratios", "verdict": "not supported", "rule": "R(+1) > 1 and R(-1) < 1",
                    "numbers": {"ratio_high": 0.9, "ratio_low": 1.1}}]},
        {"id": 3, "title": "Ablations", "statement": "h = 0.33 is best.", "paper": "Table 1", "verdict": "inconclusive",
         "rule": "parts combined", "numbers": {"protocol": "verification/lq"},
         "decision": {"to_supported_se": -3.5, "to_not_supported_se": -1.4, "distance_se": -1.4, "borderline": False},
         "parts": [{"name": "h: paper's best", "verdict": "inconclusive", "rule": "2 SE",
                    "numbers": {f"n{i}": i / 7 for i in range(20)}}]},
    ],
}

ANALYSIS_FIGURES = ("fig2_norm_vs_iq.png", "fig2_pyi_vs_iq.png", "correlation_vs_progress.png", "augmentation_by_norm.png",
                    "training_curves.png", "extra_panel.png", "zhat_by_progress.png")
#: Reference runs' images seen in the fixture: 3 epochs × (200 // 32) steps × batch 32 (fixtures_runs.run_size).
FIXTURE_IMAGES_SEEN = 3 * (200 // 32) * 32


def _png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (480, 300)) -> None:
    """A non-blank PNG: a colour gradient with a diagonal band (PIL, fast)."""
    from PIL import Image

    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), dtype=np.uint8)
    for c in range(3):
        img[..., c] = (colour[c] * (0.4 + 0.6 * x / w)).astype(np.uint8)
    img[np.abs(x * h / w - y) < 6] = (255, 255, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, format="PNG")


def _quality_summary(root: Path) -> None:
    from marginlab.quality.summary import summarize_scores

    rng = np.random.default_rng(7)
    n = 300
    gt = rng.uniform(0, 1, n)
    brisque = np.clip(100 * (1 - gt) + rng.normal(0, 12, n), -10, 130)
    types = np.array(["", "blur", "noise", "jpeg+blur", "low_resolution", "exposure"])
    deg = types[rng.integers(0, len(types), n)]
    split = np.where(np.arange(n) < 200, "train", "bin:lq")
    scores = pd.DataFrame({"split": split, "index": np.arange(n), "brisque": brisque,
                           "iq": 1 - np.clip(brisque, 0, 100) / 100})
    truth = pd.DataFrame({"split": split, "index": np.arange(n), "gt_quality": gt, "degradations": deg})
    summary = summarize_scores(scores, truth)
    (root / "quality" / "summary.json").write_text(json.dumps(summary, indent=2))
    (root / "quality" / "timing.json").write_text(json.dumps({"stage": "quality", "wall_time_s": 33.5}))


DVC_LOCK = """schema: '2.0'
stages:
  prepare:
    cmd: python stages/prepare.py
    deps:
    - path: data
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
      size: 0
      nfiles: 0
    - path: stages/prepare.py
      hash: md5
      md5: feedfacecafebeef0000111122223333
      size: 2048
    params:
      params.yaml:
        data: {}
        seed: 42
    outs:
    - path: prepared
      hash: md5
      md5: aaaabbbbccccddddeeeeffff00001111.dir
  gst:
    cmd: python stages/gst.py
    deps:
    - path: stages/gst.py
      hash: md5
      md5: 99998888777766665555444433332222
    params:
      params.yaml:
        heads: {}
"""


def write_analysis(root: Path, *, gst: bool = True) -> None:
    analysis = root / "analysis"
    analysis.mkdir(parents=True, exist_ok=True)
    COMPARISON.to_csv(analysis / "comparison.csv", index=False)
    ABLATION.to_csv(analysis / "ablation.csv", index=False)
    correlation_frame().to_csv(analysis / "correlation.csv", index=False)
    augmentation_frame().to_csv(analysis / "augmentation.csv", index=False)
    (analysis / "claims.json").write_text(json.dumps(CLAIMS, indent=2))
    (analysis / "summary.json").write_text(json.dumps({"runs": 10, "claims_supported": 1}))
    (analysis / "timing.json").write_text(json.dumps({"stage": "analyze", "wall_time_s": 41.0}))
    colours = [(200, 60, 60), (60, 160, 60), (60, 60, 200), (200, 160, 40), (120, 60, 180), (40, 160, 160), (160, 40, 100)]
    zhat_frame().to_csv(analysis / "zhat.csv", index=False)
    for name, colour in zip(ANALYSIS_FIGURES, colours):
        _png(analysis / "figures" / name, colour)
    write_scale(analysis)
    if gst:
        from marginlab.analysis.gst_study import write_gst_outputs
        from marginlab.core.config import load_params

        heads = load_params(root / "params.yaml").heads
        write_gst_outputs(heads, analysis / "gst", n=21, curve_n=41)


def build_report_tree(root: str | Path, *, gst: bool = True) -> Path:
    """Write the whole fixture (module docstring) under ``root``; return ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    build_fixture_tree(root, runs=DEFAULT_RUNS, epochs=3, probe_size=60)
    _quality_summary(root)
    _png(root / "prepared" / "samples.png", (180, 120, 60), size=(320, 160))
    write_analysis(root, gst=gst)
    (root / "dvc.lock").write_text(DVC_LOCK)
    return root
