"""Data-parallel training of one run over several processes: launch, process group, collectives.

One entry point, :func:`run_train` (what ``marginlab train`` calls), covers three ways a run starts:

1. ``train.distributed.nproc_per_node = 1`` and no process group in the environment: one process,
   :func:`marginlab.train.loop.train_process`.
2. ``nproc_per_node = N > 1``: the stage starts N workers on this node itself with PyTorch's elastic
   launcher (``torch.distributed.launcher.api.elastic_launch``, the engine behind ``torchrun``;
   standalone c10d rendezvous on a free local port, no restarts), so DVC's and Snakemake's commands do
   not change. The launcher watches the workers: when one fails or dies, it stops the others and
   :class:`DistributedTrainingError` names the rank and its error or signal.
3. Started by ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` set), or by ``srun`` with one task per
   GPU (``SLURM_NTASKS``/``SLURM_PROCID``/``SLURM_LOCALID`` and ``MASTER_ADDR``/``MASTER_PORT`` set): the
   process joins that group (``env://``); this is how runs span several nodes.

Each worker initialises the process group with ``train.distributed.backend`` (``auto``: NCCL on CUDA,
gloo on the CPU) and a timeout of ``train.distributed.timeout_s`` on every collective, so a worker that
died cannot leave the others waiting forever. On CUDA a worker uses GPU ``LOCAL_RANK``; on the CPU it
takes ``cores / processes-per-node`` threads when ``train.threads`` is 0.

:class:`DistEnv` is what the training loop knows about its place in the group: ``rank``, ``world_size``,
``is_main`` (rank 0 alone writes checkpoints, probes, dvclive logs, ``model.pt`` and the summary).
"""

from __future__ import annotations

import datetime
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from marginlab.core.config import ConfigError, DistributedConfig, Params
from marginlab.train.job import TrainJob

log = logging.getLogger(__name__)


class DistributedTrainingError(RuntimeError):
    """A worker of a data-parallel run failed or died; the others were stopped."""


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the data-parallel group (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: Optional[str] = None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistEnv()


# --------------------------------------------------------------------------- environment
def env_from_environ(environ: Optional[dict[str, str]] = None) -> Optional[DistEnv]:
    """The group this process was started into by torchrun (``WORLD_SIZE``/``RANK``) or srun
    (``SLURM_NTASKS``/``SLURM_PROCID`` with ``MASTER_ADDR``), or None when it was started alone."""
    env = os.environ if environ is None else environ

    def number(key: str, default: Optional[int] = None) -> Optional[int]:
        value = env.get(key)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"environment variable {key}={value!r} is not an integer") from None

    if env.get("WORLD_SIZE"):
        world, rank = number("WORLD_SIZE"), number("RANK")
        if rank is None:
            raise ConfigError("WORLD_SIZE is set but RANK is not: start the workers with torchrun (or set both)")
        local_rank = number("LOCAL_RANK", 0)
        local_world = number("LOCAL_WORLD_SIZE", world)
    elif env.get("SLURM_NTASKS") and number("SLURM_NTASKS", 1) > 1 and env.get("MASTER_ADDR"):
        world, rank = number("SLURM_NTASKS"), number("SLURM_PROCID", 0)
        local_rank = number("SLURM_LOCALID", 0)
        local_world = number("SLURM_NTASKS_PER_NODE", None) or _slurm_tasks_on_node(env) or world
    else:
        return None
    if world < 1 or not 0 <= rank < world or not 0 <= local_rank < max(local_world, 1):
        raise ConfigError(f"inconsistent process group in the environment: rank {rank}, world size {world}, "
                          f"local rank {local_rank} of {local_world}")
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, local_world_size=max(local_world, 1))


def _slurm_tasks_on_node(env) -> Optional[int]:
    # SLURM_TASKS_PER_NODE looks like "4(x2)" or "4,3".
    spec = env.get("SLURM_TASKS_PER_NODE", "")
    head = spec.split(",")[0].split("(")[0]
    return int(head) if head.isdigit() else None


def resolve_backend(name: str, device: torch.device) -> str:
    """``auto`` → NCCL on CUDA, gloo on the CPU; NCCL on the CPU is refused."""
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and device.type != "cuda":
        raise ConfigError("train.distributed.backend is 'nccl' but the run trains on the CPU; use 'gloo' or 'auto'")
    return name


def worker_device(device: torch.device, env: DistEnv) -> torch.device:
    """The device of this worker: ``cuda:LOCAL_RANK`` on CUDA (checked against the visible GPUs)."""
    if device.type != "cuda" or not env.active:
        return device
    count = torch.cuda.device_count()
    if env.local_rank >= count:
        raise ConfigError(f"worker {env.rank} has local rank {env.local_rank} but this node has {count} visible "
                          "GPU(s); set train.distributed.nproc_per_node to at most the number of GPUs")
    torch.cuda.set_device(env.local_rank)
    return torch.device("cuda", env.local_rank)


def init_group(env: DistEnv, cfg: DistributedConfig, device: torch.device) -> DistEnv:
    """Join the process group of ``env`` (``env://``) with the configured backend and collective timeout."""
    backend = resolve_backend(cfg.backend, device)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            kwargs["device_id"] = torch.device("cuda", env.local_rank)
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size,
                                timeout=datetime.timedelta(seconds=cfg.timeout_s), **kwargs)
    return DistEnv(env.rank, env.world_size, env.local_rank, env.local_world_size, backend)


def close_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------- collectives
def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum of ``tensor`` over the processes (in place; a no-op for one process)."""
    if env.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(env: DistEnv) -> None:
    if env.active:
        dist.barrier()


def gather_concat(values: torch.Tensor) -> torch.Tensor:
    """``values`` (B, ...) of every process concatenated in rank order (no gradient; equal B per process)."""
    parts = [torch.empty_like(values) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, values.detach().contiguous())
    return torch.cat(parts)


def decorrelate_rng(seed: int, epoch: int, env: DistEnv) -> None:
    """Give ranks > 0 their own torch random stream (dropout masks) from ``(seed, rank, epoch)``.

    Rank 0 keeps the run's stream (so a one-process run is unchanged and rank 0's state is what the
    checkpoint stores); the others would otherwise draw the same masks on their own shards.
    """
    if env.rank > 0:
        seq = np.random.SeedSequence([int(seed), int(env.rank), int(epoch), 0x5EED])
        torch.manual_seed(int(seq.generate_state(1)[0]))


# --------------------------------------------------------------------------- launch
def run_train(params: Params, run_name: str, *, resume: bool = True, hooks: Any = None) -> Optional[dict]:
    """Train ``run_name`` with as many processes as configured or as the environment says; rank 0's summary.

    The stage boundary: the run is resolved here, once, into a :class:`~marginlab.train.job.TrainJob` that
    everything below takes. Returns the train summary (None on ranks > 0 of a group started by torchrun/srun).
    """
    from marginlab.train.loop import train_process

    job = TrainJob.from_params(params, run_name)
    cfg = job.run.train.distributed
    env = env_from_environ()
    if env is not None:  # started by torchrun / srun: join that group
        return _run_in_group(job, env, resume, hooks)
    if cfg.nproc_per_node == 1:
        return train_process(job, resume=resume, hooks=hooks)
    return _launch_workers(job, cfg.nproc_per_node, resume, hooks)


def _run_in_group(job: TrainJob, env: DistEnv, resume: bool, hooks: Any) -> Optional[dict]:
    from marginlab.train.loop import train_process

    try:
        return train_process(job, resume=resume, hooks=hooks, dist_env=env)
    except Exception as err:
        # A collective that failed (a peer died: broken connection, or the timeout) raises a plain
        # RuntimeError from gloo/NCCL or a DistError; marginlab's own errors are subclasses and pass.
        if env.active and (type(err) is RuntimeError or isinstance(err, dist.DistError)):
            raise DistributedTrainingError(lost_group_message(job, env, err)) from err
        raise
    finally:
        close_group()


@record  # the worker's exception (type and message) reaches the launcher
def _worker(job: TrainJob, resume: bool, hooks: Any) -> Optional[dict]:
    """Entry point of one launched worker (module level: started with the ``spawn`` method)."""
    env = env_from_environ()
    assert env is not None, "the elastic launcher sets WORLD_SIZE and RANK"
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s rank{env.rank} %(name)s: %(message)s")
    return _run_in_group(job, env, resume, hooks)


def _launch_workers(job: TrainJob, nproc: int, resume: bool, hooks: Any) -> Optional[dict]:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    run_name = job.name
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"marginlab-{run_name}-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5,
        start_method="spawn",
    )
    log.info("run %s: starting %d data-parallel workers", run_name, nproc)
    try:
        results = elastic_launch(config, _worker)(job, resume, hooks)  # pickled to the spawned workers
    except ChildFailedError as err:
        raise DistributedTrainingError(failure_message(run_name, nproc, err)) from None
    return results.get(0)


def lost_group_message(job: TrainJob, env: DistEnv, err: BaseException) -> str:
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    timeout = job.run.train.distributed.timeout_s
    return (f"run {job.name!r}: data-parallel process rank {env.rank} of {env.world_size} lost its process group "
            f"({first}). Another process probably failed or died: see its log. A collective waits at most "
            f"train.distributed.timeout_s = {timeout} s. The last checkpoint written (end of the last complete "
            "epoch) is kept and the run resumes from it with any number of processes")


def failure_message(run_name: str, nproc: int, err: Any) -> str:
    """One sentence naming the worker that failed first and why (its exception, exit code or signal)."""
    rank, failure = err.get_first_failure()
    why = _failure_reason(failure)
    return (f"run {run_name!r}: data-parallel worker rank {rank} of {nproc} failed: {why}. The launcher stopped "
            "the other workers; the last checkpoint written (end of the last complete epoch) is kept and the "
            "run resumes from it with any number of processes")


def _failure_reason(failure: Any) -> str:
    message = getattr(failure, "message", None)
    if isinstance(message, dict):
        message = message.get("message")
    exitcode = getattr(failure, "exitcode", None)
    if isinstance(message, str) and message and not message.startswith("To enable traceback"):
        return message.strip()
    if isinstance(exitcode, int) and exitcode < 0:
        import signal

        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the process was killed by {name}"
    return f"the process exited with code {exitcode}"
