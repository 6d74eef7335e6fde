"""Every margin head's hyperparameters, declared once (default = the paper's value, and the valid values).

The config schema builds ``heads.<name>`` and the runs' ``head_params`` from :data:`HEAD_SPECS`, and
each head class (:mod:`marginlab.heads`) takes its hyperparameters from its spec: no default or range is
written anywhere else. Kept apart from the heads' torch code so that reading ``params.yaml`` loads no
torch. The declaration order is the order of tables and figures (baselines first, AdaFace last).
Constants and formulas: each head's module docstring, with the paper it comes from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from marginlab.core.hyperparameters import Choice, Hyperparameter, Range, check_values
from marginlab.core.name_registry import Registry

__all__ = ["HEAD_SPECS", "HeadSpec", "STATS_INIT", "head_names", "magface_lambda_bound"]


@dataclass(frozen=True)
class HeadSpec:
    """One head's name and hyperparameters; ``relations`` checks rules between them (MagFace)."""

    name: str
    hyperparameters: Mapping[str, Hyperparameter]
    relations: Optional[Callable[[dict[str, Any]], None]] = field(default=None, compare=False)

    @property
    def owner(self) -> str:
        return f"head {self.name!r}"

    def defaults(self) -> dict[str, Any]:
        """The hyperparameters with their (paper) defaults, in declaration order."""
        return {key: spec.default for key, spec in self.hyperparameters.items()}

    def check(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` checked against their ranges and the relations; unknown keys raise ``ValueError``."""
        return check_values(self.owner, self.hyperparameters, values, self.relations)

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults overlaid with ``given``, checked: every hyperparameter of a head to build."""
        unknown = sorted(set(given) - set(self.hyperparameters))
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {unknown} for head {self.name!r}; allowed: "
                f"{', '.join(sorted(self.hyperparameters))}"
            )
        return self.check({**self.defaults(), **given})


#: How a head's running batch statistics start (AdaFace μ/σ, CurricularFace t); see those heads.
#: ``official``: the released code's constants, then the EMA; ``first_batch``: the first training batch's
#: own statistics, then the EMA; ``bias_corrected``: an EMA from zero divided by 1 − (1 − α)^k after k
#: updates (Adam's correction), i.e. the plain average of all batches so far until ~1/α batches.
STATS_INIT = Choice("official", ("official", "first_batch", "bias_corrected"))


def scale(default: float = 64.0) -> Range:
    """The logit scale s > 0."""
    return Range(default, low=0.0, low_open=True)


def angular_margin(default: float) -> Range:
    """An additive angle in [0, π)."""
    return Range(default, low=0.0, high=math.pi, high_open=True)


def magface_lambda_bound(s: float, l_a: float, u_a: float, l_m: float, u_m: float) -> float:
    """Smallest λ_g for which MagFace's magnitude optimum is unique: s·k·u_a²·l_a²/(u_a²−l_a²)."""
    k = (u_m - l_m) / (u_a - l_a)
    return s * k * u_a**2 * l_a**2 / (u_a**2 - l_a**2)


def _magface_relations(values: dict[str, Any]) -> None:
    if "l_a" in values and "u_a" in values and not values["u_a"] > values["l_a"]:
        raise ValueError(f"head 'magface' needs u_a > l_a, got l_a={values['l_a']:g}, u_a={values['u_a']:g}")
    if "l_m" in values and "u_m" in values and not values["u_m"] >= values["l_m"]:
        raise ValueError(f"head 'magface' needs u_m >= l_m, got l_m={values['l_m']:g}, u_m={values['u_m']:g}")


HEAD_SPECS: Registry[HeadSpec] = Registry("head")
for _spec in (
    HeadSpec("normface", {"s": scale()}),
    # cos θ_y - m with m > 2 puts the target below every non-target logit whatever the angle.
    HeadSpec("cosface", {"s": scale(), "m": Range(0.4, low=0.0, high=2.0)}),
    HeadSpec("arcface", {"s": scale(), "m": angular_margin(0.5)}),
    # ElasticFace-Arc's paper values; beside ArcFace, whose margin it randomises.
    HeadSpec("elasticface", {"s": scale(), "m": angular_margin(0.5), "sigma": Range(0.05, low=0.0, high=1.0)}),
    HeadSpec("curricularface", {"s": scale(), "m": angular_margin(0.5), "stats_init": STATS_INIT}),
    HeadSpec(
        "magface",
        {
            "s": scale(),
            "l_a": Range(10.0, low=0.0, low_open=True),
            "u_a": Range(110.0, low=0.0, low_open=True),
            "l_m": angular_margin(0.45),
            "u_m": angular_margin(0.8),
            "lambda_g": Range(35.0, low=0.0),
        },
        relations=_magface_relations,
    ),
    # h scales the batch z-score of the norm before the clip to [-1, 1]: the paper's ablation spans
    # 0.22..1 (h = 0 would be CosFace: use that head).
    HeadSpec(
        "adaface",
        {
            "s": scale(),
            "m": angular_margin(0.4),
            "h": Range(0.333, low=0.0, high=1.0, low_open=True),
            "t_alpha": Range(0.01, low=0.0, high=1.0, low_open=True),
            "stats_init": STATS_INIT,
        },
    ),
):
    HEAD_SPECS.add(_spec.name, _spec)


def head_names() -> tuple[str, ...]:
    """Every declared head, in table order."""
    return HEAD_SPECS.names()
