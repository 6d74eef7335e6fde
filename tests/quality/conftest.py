"""Fixtures of the quality tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One intra-op thread for this module (restored after): BRISQUE runs thousands of tiny ops, and
    with two threads on a busy shared CPU each one waits for the other thread's time slice (measured
    ~30x slower); scores do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
