"""Fault-injection hooks for the data-parallel tests (module level: spawned workers import them)."""

from __future__ import annotations

import os
import signal


def kill_everything_after_epoch_1(epoch: int, state) -> None:
    """``kill -9`` of the launcher and every worker once epoch 1's checkpoint is on disk (rank 0)."""
    if epoch == 1 and state.rank == 0:
        os.killpg(os.getpgrp(), signal.SIGKILL)


def rank_1_dies_at_step_2(epoch: int, step: int, state) -> None:
    """Rank 1 is killed by SIGKILL in the middle of epoch 1, while rank 0 waits for its gradients."""
    if epoch == 1 and step == 2 and state.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)


def rank_1_exits_at_step_2(epoch: int, step: int, state) -> None:
    """Rank 1 vanishes (exit without a word) in epoch 1: a group started by torchrun has no launcher
    of ours watching, so rank 0 must be freed by the collective timeout or the broken connection."""
    if epoch == 1 and step == 2 and state.rank == 1:
        os._exit(3)


class RecordLosses:
    """``on_step_end`` hook: rank 0 appends ``epoch step loss`` lines to ``path``."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __call__(self, epoch: int, step: int, state, loss: float) -> None:
        if state.rank == 0:
            with open(self.path, "a") as f:
                f.write(f"{epoch} {step} {loss!r}\n")


def read_losses(path) -> list[float]:
    with open(path) as f:
        return [float(line.split()[2]) for line in f]
