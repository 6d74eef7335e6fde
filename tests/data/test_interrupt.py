"""Ctrl-C during prepare (issue #21): one ``error:`` line, exit status 130, no traceback from the stage or
its generator workers, and no temporary file or half-written output left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pipeline_helpers import ROOT


@pytest.mark.slow
def test_ctrl_c_during_prepare_is_clean(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())  # big enough to be mid-work for a few seconds
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "marginlab", "prepare", "--no-progress", "--workers", "2"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True,  # its own process group, as a terminal's foreground job
                            # as a terminal starts it: a test runner started in the background (`make test &`, some
                            # CI shells) ignores SIGINT, children inherit that, and Python then keeps ignoring it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".prepared.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, f"prepare ended before it could be interrupted: {proc.stderr.read()[-2000:]}"
    time.sleep(1.0)  # inside the generator's worker pool
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: every process of the group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        "error: interrupted (Ctrl-C); outputs left as they were before this run"]
    assert not (tmp_path / "prepared").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no temporary folder left
