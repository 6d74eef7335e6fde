"""One run's training, resolved from the params once, at the stage boundary.

Everything below the ``train`` stage (the launcher, each data-parallel process, the context, the data
loading, the checkpoint fingerprint) takes this one object instead of ``(params, run name)``, so the run
is resolved once and nothing downstream can read a params key the stage does not declare. It holds only
validated config values, so it pickles to spawned data-parallel workers as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from marginlab.core.config import AugmentConfig, Params, ResolvedRun
from marginlab.core.layouts import PreparedLayout, QualityLayout, RunLayout

__all__ = ["TrainJob"]


@dataclass(frozen=True)
class TrainJob:
    run: ResolvedRun  # the run with the shared model/train/head sections merged in
    params_seed: int  # the file's seed: the run's seed derives from it and run.seed
    augment: AugmentConfig
    channel_order: str
    skip_corrupt: bool
    prepared: PreparedLayout
    scores_path: Path  # the quality stage's per-image scores (the BRISQUE proxy, the probe's IQ)
    run_layout: RunLayout
    identities_key: str  # the params key that sets train.identities for this run (for error messages)

    @classmethod
    def from_params(cls, params: Params, run_name: str) -> TrainJob:
        data = params.data
        return cls(
            run=params.run(run_name), params_seed=params.seed, augment=params.augment,
            channel_order=data.channel_order, skip_corrupt=data.skip_corrupt, prepared=PreparedLayout.of(params),
            scores_path=QualityLayout.of(params).scores, run_layout=RunLayout.of(params, run_name),
            identities_key=params.train_key(run_name, "identities"),
        )

    @property
    def name(self) -> str:
        return self.run.name
