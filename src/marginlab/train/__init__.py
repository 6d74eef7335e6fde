"""Training: one run = backbone + margin head + quality proxy + optimisation settings, all from params.

Public API: :func:`run_train` (writes ``runs/<run>/``) and :func:`load_model` (reads ``model.pt``).
Modules: ``context`` (the run context: resolved config, device, AMP, data, modules, optimiser),
``loop`` (the epoch loop and the run's outputs), ``callbacks`` (probing, validation/selection, dvclive,
checkpointing around the epochs), ``optim`` (SGD groups, schedule), ``checkpoint`` (atomic full state),
``probe`` (per-epoch probe tables), ``proxy`` (quality signal for the head), ``live`` (dvclive wrapper),
``selection`` (held-out metric), ``runtime`` (seed, threads, AMP). The model.pt format
(:func:`load_model`, :func:`model_info`) lives in :mod:`marginlab.models`, shared with evaluation;
it is re-exported here.
"""

from marginlab.train.loop import TrainHooks, TrainingDivergedError, run_train
from marginlab.models import load_model, model_info

__all__ = ["run_train", "load_model", "model_info", "TrainHooks", "TrainingDivergedError"]
