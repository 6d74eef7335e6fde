"""DVC and Snakemake see the same stage graph (nodes and edges) from the one definition in dvc.yaml."""

from __future__ import annotations

import re

import pytest

from marginlab.core.config import load_params
from marginlab.pipeline.graph import rule_name, stage_edges

from pipeline_helpers import ROOT, copy_repo, run


def _dot_edges(dot: str) -> tuple[set[str], set[tuple[str, str]]]:
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, flags=re.M))
    if labels:  # snakemake: numeric ids with labels
        nodes = set(labels.values())
        edges = {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M)}
    else:  # dvc: quoted names
        nodes = set(re.findall(r'^\s*"([^"]+)";', dot, flags=re.M))
        edges = set(re.findall(r'^\s*"([^"]+)" -> "([^"]+)"', dot, flags=re.M))
    return nodes, edges


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dest = copy_repo(tmp_path_factory.mktemp("graph") / "repo")
    run("mkdir -p data && dvc add -q data", dest)
    return dest


def test_dvc_and_snakemake_graphs_are_identical(repo):
    dvc_nodes, dvc_edges = _dot_edges(run(["dvc", "dag", "--dot"], repo).stdout)
    smk_nodes, smk_edges = _dot_edges(run(["snakemake", "--rulegraph", "-c1"], repo).stdout)
    to_rule = {n: rule_name(n) for n in dvc_nodes if n != "data.dvc"}
    dvc_nodes_r = set(to_rule.values())
    dvc_edges_r = {(to_rule[a], to_rule[b]) for a, b in dvc_edges if a in to_rule and b in to_rule}
    smk_nodes.discard("all")
    smk_edges = {(a, b) for a, b in smk_edges if b != "all"}
    assert smk_nodes == dvc_nodes_r
    assert smk_edges == dvc_edges_r
    # every run of the grid has its train and evaluate stage
    runs = load_params(repo / "params.yaml").runs
    for name in runs:
        assert f"train@{name}" in dvc_nodes and f"evaluate@{name}" in dvc_nodes
        assert (f"train@{name}", f"evaluate@{name}") in dvc_edges
    assert ("prepare", "quality") in dvc_edges and ("analyze", "report") in dvc_edges


def test_graph_module_matches_dvc(repo):
    import os

    from marginlab.pipeline.graph import load_stages

    cwd = os.getcwd()
    try:
        stages = load_stages(repo)
    finally:
        os.chdir(cwd)
    _, dvc_edges = _dot_edges(run(["dvc", "dag", "--dot"], repo).stdout)
    assert stage_edges(stages) == {(a, b) for a, b in dvc_edges if a != "data.dvc"}
    train = next(s for s in stages if s.name.startswith("train@"))
    assert any(o.endswith("checkpoint.pt") for o in train.persistent_outputs)
    assert train.snakemake.get("gpu") == 1


def test_snakemake_dry_run_and_lint(repo):
    dry = run(["snakemake", "-n", "-c2"], repo)
    assert "prepare" in dry.stdout and "report" in dry.stdout
    lint = run(["snakemake", "--lint"], repo, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_changing_one_run_margin_changes_only_its_params(repo):
    """The params a train stage tracks are its own run entry and its head's defaults, nothing else."""
    from marginlab.pipeline.graph import load_stages

    stages = {s.name: s for s in load_stages(repo)}
    name = next(n for n in stages if n.startswith("train@"))
    run_name = name.split("@", 1)[1]
    tracked = set(stages[name].params)
    assert f"runs.{run_name}" in tracked
    assert not any(k.startswith("runs.") and k != f"runs.{run_name}" for k in tracked)
    assert ROOT.exists()


def test_train_jobs_request_one_gpu_per_data_parallel_process():
    from marginlab.core.config import Params
    from marginlab.pipeline.graph import train_resources

    params = Params.model_validate({
        "train": {"batch_size": 512, "distributed": {"nproc_per_node": 2}},
        "runs": {"a": {"head": "adaface"},
                 "b": {"head": "cosface", "train": {"distributed": {"nproc_per_node": 8}}},
                 "c": {"head": "arcface", "train": {"device": "cpu"}}},
    })
    hints = {"gpu": 1, "threads": 8, "directories": ["x"]}
    assert train_resources(params, "a", hints) == {"gpu": 2, "threads": 16, "directories": ["x"]}
    assert train_resources(params, "b", hints)["gpu"] == 8 and train_resources(params, "b", hints)["threads"] == 64
    assert train_resources(params, "c", hints)["gpu"] == 0
