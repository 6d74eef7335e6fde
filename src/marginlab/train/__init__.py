"""Training: one run = backbone + margin head + quality proxy + optimisation settings, all from params.

Public API: :func:`run_train` (one run, writes ``runs/<run>/``, with as many data-parallel processes as
configured or as torchrun/srun started; what the stage calls), :func:`train_process` (one process's
share of it) and :func:`load_model` (reads ``model.pt``).
Modules: ``context`` (the run context: resolved config, device, AMP, data, modules, optimiser),
``loop`` (the epoch loop and the run's outputs), ``callbacks`` (probing, validation/selection, dvclive,
checkpointing around the epochs), ``optim`` (SGD groups, schedule), ``checkpoint`` (atomic full state),
``probe`` (per-epoch probe tables), ``proxy`` (quality signal for the head), ``live`` (dvclive wrapper),
``selection`` (held-out metric), ``runtime`` (seed, threads, AMP), ``distributed`` (launch, process
group, collectives), ``network`` (backbone → proxy → head as one module), ``sync_batchnorm``. The model.pt format
(:func:`load_model`, :func:`model_info`) lives in :mod:`marginlab.models`, shared with evaluation;
it is re-exported here.
"""

from marginlab.train.distributed import DistributedTrainingError, run_train
from marginlab.train.loop import TrainHooks, TrainingDivergedError, train_process
from marginlab.models import load_model, model_info

__all__ = ["run_train", "train_process", "load_model", "model_info", "TrainHooks", "TrainingDivergedError",
           "DistributedTrainingError"]
