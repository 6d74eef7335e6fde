"""Stage ``train@RUN``: train one run of the grid into ``runs/<RUN>/``.

    python -m marginlab train RUN [--params params.yaml] [--no-resume]

Resumes from ``runs/<RUN>/checkpoint.pt`` when it matches the configuration (a DVC ``persist`` output).
With ``train.distributed.nproc_per_node`` > 1 the stage starts that many data-parallel workers itself;
started by ``torchrun``/``srun`` (``WORLD_SIZE``/``RANK`` set) it joins their process group instead.
"""

from __future__ import annotations

import argparse
import json

from marginlab.core.config import ConfigError, Params
from marginlab.data.formats import DataFormatError
from marginlab.train import DistributedTrainingError, TrainingDivergedError, run_train
from marginlab.train.checkpoint import CheckpointError
from marginlab.train.proxy import ProxyError

ERRORS = (
    ConfigError,
    FileNotFoundError,
    DataFormatError,
    ProxyError,
    TrainingDivergedError,
    CheckpointError,
    DistributedTrainingError,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint and start over")


def run(args: argparse.Namespace, params: Params) -> int:
    summary = run_train(params, args.run, resume=not args.no_resume)
    if summary is None:  # a rank > 0 of a group started by torchrun/srun: rank 0 reports
        return 0
    keys = (
        "run",
        "epochs",
        "selected_epoch",
        "final_loss",
        "final_acc",
        "images_per_s",
        "wall_time_s",
        "device",
        "amp",
        "world_size",
    )
    print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    return 0
