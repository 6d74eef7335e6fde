"""The claims of ``claims.json`` behind one registry, so that a new claim is one module of this package.

A claim is a function ``(ClaimEvidence) -> claim dict`` (:func:`marginlab.analysis.claim_parts.make_claim`)
decorated with :func:`register_claim`; the analysis stage builds one :class:`ClaimEvidence` and
:func:`evaluate_claims` calls every registered claim on it in ``order``. Claims read the evidence only,
never each other, so adding one cannot change another's verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from marginlab.core.name_registry import Registry

if TYPE_CHECKING:
    from marginlab.analysis.collect import Collection
    from marginlab.core.config import Params

__all__ = ["CLAIMS", "ClaimEvidence", "ClaimSpec", "claim_by_id", "evaluate_claims", "register_claim"]

ClaimFn = Callable[["ClaimEvidence"], dict[str, Any]]


@dataclass(frozen=True)
class ClaimEvidence:
    """What the claims read, computed once by the analysis stage (:func:`..claim_evidence.build_evidence`).

    ``correlation`` / ``progress_correlation``: the rows of ``correlation.csv`` / ``correlation_progress.csv``;
    ``aggregate``: :func:`..tables.aggregate` of every run's metrics; ``ablation``: ``ablation.csv``;
    ``pyi_nonlinearity``, ``augmentation_gaps``, ``norm_changes``: per reference run, at its last epoch
    (:func:`..correlation.nonlinearity_test`, :func:`..augmentation.low_high_gap`, :func:`..augmentation.norm_change`).
    """

    params: Params
    collection: Collection
    reference: str | None
    reference_runs: tuple[str, ...]
    compared: tuple[str, ...]  # the other main labels
    correlation: pd.DataFrame
    progress_correlation: pd.DataFrame
    aggregate: pd.DataFrame
    ablation: pd.DataFrame
    pyi_nonlinearity: Mapping[str, Mapping[str, Any]]
    augmentation_gaps: Mapping[str, Mapping[str, Any]]
    norm_changes: Mapping[str, pd.DataFrame]
    norm_bins: int
    n_resamples: int
    confidence: float

    @property
    def compared_aggregate(self) -> pd.DataFrame:
        """``aggregate`` restricted to the reference and the compared main labels."""
        return self.aggregate[self.aggregate["label"].isin([self.reference, *self.compared])]


@dataclass(frozen=True)
class ClaimSpec:
    id: str
    order: float
    compute: ClaimFn


CLAIMS: Registry[ClaimSpec] = Registry("claim")


def register_claim(claim_id: str, *, order: float) -> Callable[[ClaimFn], ClaimFn]:
    """Register ``fn`` as claim ``claim_id`` (the ``id`` its dict carries); ``order`` places it in ``claims.json``."""

    def add(fn: ClaimFn) -> ClaimFn:
        CLAIMS.add(str(claim_id), ClaimSpec(str(claim_id), order, fn))
        return fn

    return add


def evaluate_claims(evidence: ClaimEvidence) -> list[dict[str, Any]]:
    """Every registered claim on ``evidence``, in ``order`` (ties: registration order)."""
    out = []
    for spec in sorted(CLAIMS.values(), key=lambda s: s.order):
        claim = spec.compute(evidence)
        if str(claim.get("id")) != spec.id:
            raise ValueError(f"claim registered as {spec.id!r} returned id {claim.get('id')!r}")
        out.append(claim)
    return out


def claim_by_id(claims: list[dict[str, Any]], claim_id: str) -> dict[str, Any]:
    """The claim dict with ``id`` ``claim_id`` (``{}`` when no registered claim has it)."""
    return next((c for c in claims if str(c.get("id")) == str(claim_id)), {})
