"""bench/device_check.sh --cpu-dry-run: every step runs on the CPU and the JSON table has every row.

The dry run takes ~1.5 min on a 2-core machine (more under load), hence ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Row labels (prefixes) of the table, in order.
EXPECTED = [
    "environment",
    "BRISQUE model file",
    "CUDA tests (pytest -m cuda)",
    "AMP bf16 training step",
    "AMP fp16 training step",
    "channels_last forward",
    "BRISQUE cuda vs cpu",
    "tiny run_train on CUDA",
    "prepare tiny synthetic set",
    "train, 1 process",
    "DDP, 2 CPU processes",
    "IR-18 x0.25 batch 8, eager",
    "data loader, 1 worker",
    "BRISQUE throughput on cpu",
    "IR-18 x0.25 batch 8, torch.compile",
]
CUDA_ONLY = set(EXPECTED[2:8])


@pytest.mark.slow
def test_cpu_dry_run_writes_the_whole_table(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "TMPDIR": str(tmp_path), "BUDGET_S": "1200",
           "TIME_SCALE": "3"}  # generous limits: the suite may run beside it on a loaded machine
    env.pop("DRY_RUN", None)
    proc = subprocess.run(["bash", "bench/device_check.sh", "--cpu-dry-run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1500)
    table = tmp_path / "out" / "device_check.json"
    assert table.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(table.read_text())
    assert data["mode"] == "cpu-dry-run" and data["environment"]["torch"]
    checks = [r["check"] for r in data["rows"]]
    assert len(checks) == len(EXPECTED), checks
    for check, prefix in zip(checks, EXPECTED):
        assert check.startswith(prefix), (check, prefix)
    for r, prefix in zip(data["rows"], EXPECTED):
        assert set(r) >= {"check", "status", "result", "target", "seconds", "step", "log", "data"}
        if prefix in CUDA_ONLY:
            assert r["status"] == "skipped", r
        else:
            assert r["status"] == "pass", r
            assert (tmp_path / "out" / r["log"]).exists(), r["log"]
    rates = {r["check"]: r["data"].get("images_per_s") for r in data["rows"]}
    assert all(v and v > 0 for k, v in rates.items() if "batch 8" in k or k.startswith(("data loader", "BRISQUE thr"))), rates
    ddp = data["rows"][EXPECTED.index("DDP, 2 CPU processes")]["data"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    # exit status and the printed table agree with the JSON; the table is the end of the output
    assert proc.returncode == data["exit_code"] == 0, proc.stdout[-3000:]
    assert data["failed"] == []
    out = proc.stdout.rstrip().splitlines()
    assert out[-1] == f"wrote {table}"
    assert out[-1 - len(data["table"]):-1] == data["table"]
    assert data["duration_s"] < 600
