"""Does training on detected-and-aligned photos reach training on originally aligned crops? (issue #15)

:func:`compare_alignment` renders twin datasets of the same synthetic faces
(:func:`marginlab.data.scenes.write_scene_dataset`): unaligned cluttered scenes, and the generator's
aligned 112x112 crops.  It prepares the scenes with ``data.align: detect`` and the crops with
``data.align: none``, trains the same model with the same seed on each, and evaluates each on
verification pairs of held-out identities: ``accuracy`` on the originally aligned pairs (the same
pairs for both models: the difference is the training set's alignment), and, for the detected twin,
``accuracy_own_pairs`` on the scenes' pairs detected and aligned like its training set (minus the
pairs that lost a face: an end-to-end figure on fewer pairs).  Used by ``bench/bench_align.py`` (measured
numbers in bench/RESULTS.md) and, small, by tests/data/test_align.py.  Not a pipeline stage.
``unaligned_control`` adds a third model trained on the scenes as they are (``align: none``: centre
crop, resized), the negative control that shows the comparison can tell alignment from none.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from marginlab.core.config import Params
from marginlab.data.align.evaluation import aligned_landmark_error, alignment_floor
from marginlab.data.prepare import run_prepare
from marginlab.data.scenes import write_scene_dataset

__all__ = ["compare_alignment"]


def _params(work: Path, tag: str, train_folders: Path, val_bin: Path, align: str, train: dict, model: dict, alignment: dict) -> Params:
    return Params.model_validate({
        "seed": 3,
        "data": {"source": "folders", "name": tag, "prepared_dir": str(work / f"prepared_{tag}"),
                 "train_folders": str(train_folders), "val_bins": [str(val_bin)], "align": align,
                 "alignment": {"cache_dir": str(work / "align_cache"), **alignment}},
        "quality": {"output_dir": str(work / f"quality_{tag}")},
        "model": model,
        "train": train,
        "runs": {"cos": {"head": "cosface", "head_params": {"s": 16.0, "m": 0.2}}},
        "runs_dir": str(work / f"runs_{tag}"),
    })


def compare_alignment(
    work: str | Path,
    *,
    identities: int = 12,
    per_identity: int = 8,
    val_identities: int = 8,
    val_pairs: int = 60,
    canvas: tuple[int, int] = (160, 160),
    face_px: tuple[float, float] = (70.0, 110.0),
    epochs: int = 6,
    input_size: int = 32,
    width: float = 0.125,
    alignment: Optional[dict] = None,
    seed: int = 0,
    threads: int = 1,
    unaligned_control: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Prepare, train and evaluate both twins under ``work``; returns the measured numbers."""
    from marginlab.evaluate.stage import evaluate_prepared, load_run_model
    from marginlab.train import run_train

    work = Path(work)
    t0 = time.perf_counter()
    paths = write_scene_dataset(work / "src", seed=seed, identities=identities, per_identity=per_identity,
                                val_identities=val_identities, val_pairs=val_pairs, canvas=canvas, face_px=face_px)
    render_s = time.perf_counter() - t0
    train = {"epochs": epochs, "batch_size": 16, "lr": 0.1, "num_workers": 0, "threads": threads, "device": "cpu",
             "probe_size": 16, "milestones": [0.67], "amp": "auto"}
    model = {"backbone": "ir_18", "width": width, "input_size": input_size, "embedding_size": 64, "dropout": 0.0}
    al = {"device": "cpu", "threads": threads, **(alignment or {})}
    twins = {
        "original": _params(work, "original", paths["orig"], paths["orig_val"], "none", train, model, al),
        "detected": _params(work, "detected", paths["raw"], paths["raw_val"], "detect", train, model, al),
    }
    if unaligned_control:  # the scenes as they are (centre crop, resized): what align: detect is for
        twins["unaligned"] = _params(work, "unaligned", paths["raw"], paths["raw_val"], "none", train, model, al)
    out: dict[str, Any] = {"render_s": round(render_s, 2), "images": identities * per_identity, "identities": identities,
                           "val_pairs": val_pairs, "canvas": list(canvas), "epochs": epochs, "input_size": input_size}
    for tag, params in twins.items():
        t = time.perf_counter()
        manifest = run_prepare(params, params.data.prepared_dir, progress=progress)
        prep_s = time.perf_counter() - t
        t = time.perf_counter()
        run_train(params, "cos")
        train_s = time.perf_counter() - t
        backbone, _, _ = load_run_model(Path(params.runs_dir) / "cos", device="cpu")
        def verify(prepared: str) -> dict:
            res = evaluate_prepared(backbone, prepared, cfg=params.evaluate, input_size=input_size,
                                    channel_order=params.data.channel_order, device="cpu", num_workers=0, progress=False)
            (ver,) = res.verification.values()
            return ver

        ver = verify(twins["original"].data.prepared_dir)  # the same aligned pairs for both models
        out[tag] = {"accuracy": ver["accuracy_mean"], "accuracy_std": ver["accuracy_std"], "pairs": ver["pairs"],
                    "train_images": manifest["counts"]["train_images"], "prepare_s": round(prep_s, 2), "train_s": round(train_s, 2)}
        if tag == "detected":
            own = verify(params.data.prepared_dir)
            out[tag].update(accuracy_own_pairs=own["accuracy_mean"], own_pairs=own["pairs"])
            out[tag]["alignment"] = {k: manifest["alignment"][k] for k in ("detection_rate", "per_set", "cache")}
            out["landmarks"] = landmark_errors(Path(params.data.prepared_dir) / "alignment.parquet", paths["truth"])
    out["accuracy_gap"] = out["original"]["accuracy"] - out["detected"]["accuracy"]  # > 0: detected is worse
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def landmark_errors(alignment_parquet: Path, truth_parquet: Path) -> dict[str, float]:
    """Mean / p95 aligned-landmark error (px at 112) of the kept, detected images, and the floor."""
    table = pd.read_parquet(alignment_parquet)
    truth = pd.read_parquet(truth_parquet)
    truth_key = {(r.path, int(r.image)): r.landmarks for r in truth.itertuples(index=False)}
    errs, floors = [], []
    for r in table.itertuples(index=False):
        if r.face < 0:
            continue
        true = np.asarray(truth_key[(r.source, int(r.image))]).reshape(5, 2)
        errs.append(aligned_landmark_error(np.asarray(r.landmarks), true))
        floors.append(alignment_floor(true))
    return {"n": len(errs), "mean_px": float(np.mean(errs)), "p95_px": float(np.percentile(errs, 95)),
            "floor_mean_px": float(np.mean(floors)), "floor_p95_px": float(np.percentile(floors, 95))}
