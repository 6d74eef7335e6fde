"""Data-parallel training on the CPU (gloo, 2 processes): sharding, launch, equality with one process,
resume across process counts, and failures that stop every worker instead of hanging.

The tiny training set of :mod:`tiny_train` (8 identities × 12 faces, 1/8-width IR-18 at 32×32); the
global batch is 16, so each of two processes trains on 8 images per step.

Tolerance of the equality test: CPU convolution and batch-norm kernels sum in an order that depends on
the number of threads, and on these nearly uniform faces batch norm amplifies that to ~1e-4 relative
in the second step's loss (measured: one process at 1 vs 2 threads). So the two-process run is held to
the spread of the one-process run over thread counts (×3, floored at 2e-6 relative), and the test also
shows that without synchronised statistics the first loss differs by far more than that.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ddp_hooks import RecordLosses, read_losses
from tiny_train import make_params

from marginlab.core.config import ConfigError, Params
from marginlab.train.input.datasets import EpochSampler, ShardedBatchSampler
from marginlab.heads import build_head
from marginlab.models import load_model, model_info
from marginlab.train import DistributedTrainingError, TrainHooks, run_train
from marginlab.train.distributed import DistEnv, env_from_environ, resolve_backend
from marginlab.train.sync_batchnorm import GlobalBatchNorm, convert_sync_batchnorm

TESTS = Path(__file__).resolve().parents[1]  # tests/: the shared helpers


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive looks for a repository from the working directory
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)


def _params(tiny_prepared, root, head="adaface", *, nproc=1, sync=True, threads=1, **train) -> Params:
    runs = {"r": {"head": head, "head_params": {"s": 16.0}}}
    base = {"epochs": 1, "lr": 0.01, "threads": threads,
            "distributed": {"nproc_per_node": nproc, "sync_batchnorm": sync, "sync_head_stats": sync,
                            "timeout_s": 60}}
    base.update(train)
    return make_params(tiny_prepared, root, runs=runs, train=base)


# --------------------------------------------------------------------------- sharding (no processes)
class _Range(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


@pytest.mark.parametrize("epoch", [0, 3])
def test_global_batches_are_the_same_for_any_number_of_processes(epoch):
    ds, batch = _Range(203), 12  # 16 full global batches, 11 images dropped
    sampler = EpochSampler(ds, shuffle=True, seed=7)
    sampler.set_epoch(epoch)
    reference = list(torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, drop_last=True))
    assert len(reference) == 16
    for world in (1, 2, 3, 4, 6):
        shards = [list(ShardedBatchSampler(sampler, batch, rank=r, world_size=world)) for r in range(world)]
        assert all(len(s) == 16 for s in shards)
        for k in range(16):
            joined = [i for r in range(world) for i in shards[r][k]]
            assert joined == reference[k].tolist(), (world, k)
    other = EpochSampler(ds, shuffle=True, seed=7)
    other.set_epoch(epoch + 1)
    assert list(ShardedBatchSampler(other, batch))[0] != reference[0].tolist()  # reshuffled per epoch


def test_sharded_sampler_rejects_a_batch_that_does_not_divide():
    sampler = EpochSampler(_Range(40), shuffle=False, seed=0)
    with pytest.raises(ValueError, match="does not divide over 3"):
        ShardedBatchSampler(sampler, 16, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank 2"):
        ShardedBatchSampler(sampler, 16, rank=2, world_size=2)


def test_config_global_batch_must_divide_and_schema():
    with pytest.raises(Exception, match="must divide evenly over train.distributed.nproc_per_node = 3"):
        Params.model_validate({"train": {"batch_size": 128, "distributed": {"nproc_per_node": 3}}})
    with pytest.raises(Exception, match="backend"):
        Params.model_validate({"train": {"distributed": {"backend": "mpi"}}})
    with pytest.raises(Exception, match="timeout_s"):
        Params.model_validate({"train": {"distributed": {"timeout_s": 0}}})
    assert Params.model_validate({"train": {"batch_size": 512, "distributed": {"nproc_per_node": 8}}})


def test_environment_of_torchrun_and_srun():
    assert env_from_environ({}) is None
    assert env_from_environ({"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}) == \
        DistEnv(rank=5, world_size=8, local_rank=1, local_world_size=4)
    slurm = {"SLURM_NTASKS": "8", "SLURM_PROCID": "6", "SLURM_LOCALID": "2", "SLURM_TASKS_PER_NODE": "4(x2)",
             "MASTER_ADDR": "node01"}
    assert env_from_environ(slurm) == DistEnv(rank=6, world_size=8, local_rank=2, local_world_size=4)
    assert env_from_environ({**slurm, "MASTER_ADDR": ""}) is None  # a plain sbatch job, not a group
    assert env_from_environ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "MASTER_ADDR": "x"}) is None
    with pytest.raises(ConfigError, match="RANK is not"):
        env_from_environ({"WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="not an integer"):
        env_from_environ({"WORLD_SIZE": "two", "RANK": "0"})
    with pytest.raises(ConfigError, match="inconsistent"):
        env_from_environ({"WORLD_SIZE": "2", "RANK": "2"})


def test_backend_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_backend("auto", cpu) == "gloo" and resolve_backend("auto", cuda) == "nccl"
    assert resolve_backend("gloo", cuda) == "gloo"
    with pytest.raises(ConfigError, match="nccl"):
        resolve_backend("nccl", cpu)


def test_global_batchnorm_is_batchnorm_in_one_process_and_keeps_the_state_dict():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 5), torch.nn.BatchNorm1d(5, affine=False))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params_before = [id(p) for p in net.parameters()]
    x = torch.randn(6, 3, 8, 8)
    ref = torch.nn.Sequential(*[m for m in net])  # same modules
    expected = ref(x).detach()
    net.load_state_dict(before)
    converted = convert_sync_batchnorm(net, torch.device("cpu"))
    assert isinstance(converted[1], GlobalBatchNorm) and isinstance(converted[4], GlobalBatchNorm)
    assert [id(p) for p in converted.parameters()] == params_before  # the optimiser's parameters
    assert converted.state_dict().keys() == before.keys()
    torch.testing.assert_close(converted(x), expected)


@pytest.mark.parametrize("head_name", ["adaface", "curricularface"])
def test_head_statistics_over_the_gathered_batch_equal_one_head_on_the_whole_batch(head_name):
    """``sync_head_stats``: a head that sees its half of the batch plus the other half (as all_gather
    gives it) updates its running statistics exactly as one head on the whole batch."""
    torch.manual_seed(0)
    z, y = torch.randn(16, 8) * 3, torch.randint(0, 5, (16,))
    whole = build_head(head_name, 8, 5)
    halves = [build_head(head_name, 8, 5) for _ in range(2)]
    for h in halves:
        h.load_state_dict(whole.state_dict())
    for r, h in enumerate(halves):
        h.batch_gather = functools.partial(_fake_gather, rank=r, z=z, y=y, head=h)
    for _ in range(3):
        whole(z, y)
        for r, h in enumerate(halves):
            h(z[8 * r : 8 * r + 8], y[8 * r : 8 * r + 8])
    for key, value in whole.state_dict().items():
        if key != "weight":
            for h in halves:
                torch.testing.assert_close(h.state_dict()[key], value)


def _fake_gather(values: torch.Tensor, rank: int, z: torch.Tensor, y: torch.Tensor, head) -> torch.Tensor:
    """What all_gather returns to ``rank``: the same statistic input computed on both halves, in rank order."""
    other = 1 - rank
    idx = slice(8 * other, 8 * other + 8)
    if head.name == "adaface":
        theirs = z[idx].norm(dim=1).clamp(*head.norm_clip).to(values.dtype)
    else:
        theirs = head.cosine(z[idx]).gather(1, y[idx].unsqueeze(1)).squeeze(1).to(values.dtype)
    parts = [values, theirs] if rank == 0 else [theirs, values]
    return torch.cat(parts)


# --------------------------------------------------------------------------- two processes
@pytest.mark.slow
def test_two_processes_with_synchronised_statistics_equal_one_process(tiny_prepared, tmp_path):
    losses = {}
    states = {}
    for name, nproc, threads in (("one_t1", 1, 1), ("one_t2", 1, 2), ("two", 2, 0)):
        path = tmp_path / f"{name}.txt"
        summary = run_train(_params(tiny_prepared, tmp_path / name, nproc=nproc, threads=threads), "r",
                         hooks=TrainHooks(on_step_end=RecordLosses(path)))
        losses[name] = np.array(read_losses(path))
        states[name] = summary["head_state"]
        if nproc == 2:
            assert summary["world_size"] == 2 and summary["backend"] == "gloo"
            assert summary["batch_per_process"] == 8 and summary["sync_head_stats"] and summary["sync_batchnorm"]
    first = slice(0, 3)  # the first three steps: before any update, after one, after two
    spread = np.abs(losses["one_t1"][first] - losses["one_t2"][first])
    tol = np.maximum(3 * spread, 2e-6 * np.abs(losses["one_t1"][first]))
    assert np.all(np.abs(losses["two"][first] - losses["one_t1"][first]) <= tol), (losses, tol)
    for key in ("batch_mean", "batch_std"):
        head_spread = abs(states["one_t1"][key] - states["one_t2"][key])
        assert abs(states["two"][key] - states["one_t1"][key]) <= max(3 * head_spread, 2e-6 * abs(states["one_t1"][key]))
    weights = {n: load_model(tmp_path / n / "runs" / "r")[0].state_dict() for n in ("one_t1", "one_t2", "two")}
    for key, ref in weights["one_t1"].items():  # every tensor after 6 steps, to the thread-order spread
        thread_spread = float((weights["one_t2"][key].double() - ref.double()).abs().max())
        assert float((weights["two"][key].double() - ref.double()).abs().max()) <= 3 * thread_spread + 1e-6, key


@pytest.mark.slow
def test_default_mode_runs_like_the_official_code_and_rank_0_writes_everything(tiny_prepared, tmp_path):
    """Without synchronised statistics every process normalises its own 8 images (as the official code
    on several GPUs): the run completes, and its first loss differs from the one-process run by far more
    than the equality test's tolerance, so that test can tell the two apart."""
    path1, path2 = tmp_path / "one.txt", tmp_path / "two.txt"
    run_train(_params(tiny_prepared, tmp_path / "one", "curricularface"), "r", hooks=TrainHooks(on_step_end=RecordLosses(path1)))
    p2 = _params(tiny_prepared, tmp_path / "two", "curricularface", nproc=2, sync=False, threads=0)
    summary = run_train(p2, "r", hooks=TrainHooks(on_step_end=RecordLosses(path2)))
    one, two = read_losses(path1), read_losses(path2)
    assert len(two) == 6 and all(np.isfinite(two))  # 6 global steps, recorded once (rank 0)
    assert abs(two[0] - one[0]) > 1e-3 * abs(one[0])
    assert summary["world_size"] == 2 and not summary["sync_head_stats"] and summary["epochs"] == 1
    run_dir = tmp_path / "two" / "runs" / "r"
    assert sorted(p.name for p in (run_dir / "probe").iterdir()) == [f"epoch_{e:02d}.parquet" for e in range(2)] + ["progress"]
    # progress probes inside the epoch (rank 0 measures while rank 1 waits): default fractions of 6 steps
    assert sorted(p.name for p in (run_dir / "probe/progress").iterdir()) == [f"step_{s:07d}.parquet" for s in (0, 1, 2, 4, 6)]
    assert sorted(p.name for p in run_dir.iterdir() if p.is_file()) == ["checkpoint.pt", "model.pt", "train_summary.json"]
    assert json.loads((run_dir / "train_summary.json").read_text())["backend"] == "gloo"
    _, head, _ = load_model(run_dir)
    assert 0.0 < float(head.t) < 1.0  # CurricularFace's t moved from 0 with the (rank 0) batches


def _driver(tmp_path: Path, call: str) -> Path:
    """A script that loads the params written beside it and runs ``call`` (hooks from ddp_hooks)."""
    script = tmp_path / "driver.py"
    script.write_text("\n".join([
        "import json, sys",
        f"sys.path[:0] = [{str(TESTS)!r}]",
        "import ddp_hooks",
        "from marginlab.core.config import Params",
        "from marginlab.train import TrainHooks, run_train",
        "if __name__ == '__main__':",
        f"    params = Params.model_validate(json.loads(open({str(tmp_path / 'params.json')!r}).read()))",
        f"    {call}",
    ]) + "\n")
    return script


@pytest.mark.slow
def test_killed_at_two_processes_resumes_at_one(tiny_prepared, tmp_path):
    params = _params(tiny_prepared, tmp_path, nproc=2, threads=0, epochs=2)
    (tmp_path / "params.json").write_text(json.dumps(params.model_dump(mode="json")))
    script = _driver(tmp_path, "run_train(params, 'r', hooks=TrainHooks(on_epoch_end=ddp_hooks.kill_everything_after_epoch_1))")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          start_new_session=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "r"
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "model.pt").exists()
    one = params.model_copy(deep=True)
    one.train.distributed.nproc_per_node = 1
    summary = run_train(one, "r")
    assert summary["resumed_from_epoch"] == 1 and summary["epochs"] == 2 and summary["world_size"] == 1
    backbone, _, _ = load_model(run_dir)
    assert model_info(run_dir)["epoch"] == 2
    x = torch.zeros(2, 3, 32, 32)
    assert torch.isfinite(backbone.eval()(x)).all()


@pytest.mark.slow
def test_a_worker_that_dies_stops_the_others_with_a_clear_error(tiny_prepared, tmp_path):
    params = _params(tiny_prepared, tmp_path, nproc=2, threads=0, epochs=2)
    t0 = time.perf_counter()
    with pytest.raises(DistributedTrainingError, match=r"worker rank 1 of 2 failed: .*SIGKILL.*stopped the other workers"):
        run_train(params, "r", hooks=TrainHooks(on_step=__import__("ddp_hooks").rank_1_dies_at_step_2))
    assert time.perf_counter() - t0 < 90


@pytest.mark.slow
def test_a_group_started_by_torchrun_fails_instead_of_hanging(tiny_prepared, tmp_path):
    """No launcher of ours watches a torchrun/srun group: rank 0, waiting for rank 1's gradients when
    rank 1 vanishes, must fail (broken connection or the collective timeout), not hang."""
    params = _params(tiny_prepared, tmp_path, nproc=1, threads=1, epochs=2)
    params.train.distributed.timeout_s = 20
    (tmp_path / "params.json").write_text(json.dumps(params.model_dump(mode="json")))
    script = _driver(tmp_path, "run_train(params, 'r', hooks=TrainHooks(on_step=ddp_hooks.rank_1_exits_at_step_2))")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2"}
    procs = [subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(2)]
    t0 = time.perf_counter()
    outs = [p.communicate(timeout=150)[0] for p in procs]
    assert procs[1].returncode == 3
    assert procs[0].returncode != 0, outs[0][-3000:]
    assert time.perf_counter() - t0 < 120
    assert "DistributedTrainingError: run 'r': data-parallel process rank 0 of 2 lost its process group" in outs[0], \
        outs[0][-3000:]
