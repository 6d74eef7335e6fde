"""Stage start-up before and after the `marginlab` command (issue #23): the time from process start to a
stage's argument parser, for every stage, two code versions side by side.

    python bench/bench_startup.py --old-src /tmp/old/src --old-stages /tmp/old/stages [--rounds 5]

``--help`` makes each stage import what it needs to run (its module and everything that imports at module
level) and exit before any work: exactly the fixed cost a pipeline stage pays per process. The old version
is a checkout of an earlier commit (``git worktree add /tmp/old <commit>``) run with its own ``src/`` on
``PYTHONPATH``; the new one is ``python -m marginlab <stage> --help``. Rounds alternate old/new so machine
load hits both alike; the median per stage is printed, with whether torch was loaded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("prepare", "brisque_model", "quality", "train", "evaluate", "analyze", "gst", "report")
PER_RUN = {"train", "evaluate"}
PROBE = ("import sys, runpy; sys.argv = {argv!r}; "
         "code = 0\ntry:\n    runpy.{runner}({target!r}, run_name='__main__'{extra})\n"
         "except SystemExit as e:\n    code = e.code\n"
         "print('TORCH' if 'torch' in sys.modules else 'NOTORCH')")


def _time(cmd: list[str], env: dict[str, str]) -> tuple[float, bool]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t0, "TORCH" in out.split()[-1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-src", type=Path, required=True)
    ap.add_argument("--old-stages", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    new_env = dict(os.environ)
    old_env = {**os.environ, "PYTHONPATH": str(args.old_src.resolve())}
    rows = []
    for stage in STAGES:
        old_script = str((args.old_stages / f"{stage}.py").resolve())
        old = [sys.executable, "-c", PROBE.format(argv=[old_script, "--help"], runner="run_path", target=old_script, extra="")]
        new = [sys.executable, "-c", PROBE.format(argv=["marginlab", stage, "--help"], runner="run_module",
                                                  target="marginlab", extra=", alter_sys=True")]
        times: dict[str, list[float]] = {"old": [], "new": []}
        torch_loaded = {}
        for _ in range(args.rounds):
            for name, cmd, env in (("old", old, old_env), ("new", new, new_env)):
                t, loaded = _time(cmd, env)
                times[name].append(t)
                torch_loaded[name] = loaded
        o, n = statistics.median(times["old"]), statistics.median(times["new"])
        rows.append((stage, o, torch_loaded["old"], n, torch_loaded["new"]))
        print(f"{stage:<14} old {o:5.2f} s (torch {'yes' if torch_loaded['old'] else 'no '})   "
              f"new {n:5.2f} s (torch {'yes' if torch_loaded['new'] else 'no '})   new/old {n / o:4.2f}", flush=True)
    total_old, total_new = sum(r[1] for r in rows), sum(r[3] for r in rows)
    print(f"{'sum':<14} old {total_old:5.2f} s   new {total_new:5.2f} s   new/old {total_new / total_old:4.2f}")


if __name__ == "__main__":
    main()
