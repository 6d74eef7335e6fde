"""The paper's claims, each decided in one module of this package and registered by id.

A module defines a function ``(ClaimEvidence) -> claim dict`` decorated with :func:`register_claim`
(:mod:`.claim_registry`); the package imports every module of its folder on first import, so the analysis
stage (``claims.json``, ``summary.json``) and the report find a new claim without another edit. Claims 1
and 4: :mod:`.probe_claims`; 2: :mod:`.margin_form_claim`; 3 and 5: :mod:`.benchmark_claims`.
"""

from __future__ import annotations

import importlib
import pkgutil

from marginlab.analysis.claims.claim_registry import (
    CLAIMS,
    ClaimEvidence,
    ClaimSpec,
    claim_by_id,
    evaluate_claims,
    register_claim,
)


def discover() -> None:
    """Import every module of this package (each claim registers itself)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")


discover()

__all__ = ["CLAIMS", "ClaimEvidence", "ClaimSpec", "claim_by_id", "discover", "evaluate_claims", "register_claim"]
