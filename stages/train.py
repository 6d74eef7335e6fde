"""Stage ``train@RUN``: train one run of the grid into ``runs/<RUN>/``.

    python stages/train.py RUN_NAME [--params params.yaml] [--no-resume]

Resumes from ``runs/<RUN>/checkpoint.pt`` when it matches the configuration (a DVC ``persist`` output).
With ``train.distributed.nproc_per_node`` > 1 the stage starts that many data-parallel workers itself;
started by ``torchrun``/``srun`` (``WORLD_SIZE``/``RANK`` set) it joins their process group instead.
"""

from __future__ import annotations

import os

# OpenMP threads that sleep instead of spinning while they wait: on a shared CPU (several stages or
# engineers at once) spinning threads collapsed 2-thread training to ~1/3 of its speed; measured with
# bench/bench_train.py (see marginlab.train.runtime). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import logging
import sys

from marginlab.cli import run_stage
from marginlab.config import ConfigError, load_params
from marginlab.data.formats import DataFormatError
from marginlab.train import DistributedTrainingError, TrainingDivergedError, run_train
from marginlab.train.checkpoint import CheckpointError
from marginlab.train.proxy import ProxyError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run name (a key of 'runs' in params.yaml)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint and start over")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_stage(lambda: _run(args), (ConfigError, FileNotFoundError, DataFormatError, ProxyError,
                                          TrainingDivergedError, CheckpointError, DistributedTrainingError))


def _run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    summary = run_train(params, args.run, resume=not args.no_resume)
    if summary is None:  # a rank > 0 of a group started by torchrun/srun: rank 0 reports
        return 0
    keys = ("run", "epochs", "selected_epoch", "final_loss", "final_acc", "images_per_s", "wall_time_s", "device", "amp",
            "world_size")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
