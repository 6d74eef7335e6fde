"""SGD parameter groups and the step-wise learning-rate schedule of the AdaFace recipe.

Recipe (official scripts, ``heads.md``): SGD, momentum 0.9, weight decay 5e-4 on convolution and linear
weights and on the classifier (head) weights, **no** weight decay on BatchNorm parameters, PReLU slopes
or biases; learning rate multiplied by ``gamma`` (0.1) at each milestone.

Schedule (one value per optimiser step ``k`` = 0, 1, ... in a run of ``E`` epochs of ``N`` steps)::

    lr(k) = lr0 · warmup(k) · gamma ** #{milestone steps M_i <= k}
    warmup(k) = min(1, (k + 1) / W)            with W = round(warmup_epochs · N) (no warm-up if W = 0)
    M_i = round(f_i · E · N)    if f_i < 1      (a fraction of the whole run, resolved to a step)
    M_i = f_i · N               if f_i >= 1     (an epoch number; the decay starts with that epoch)

Fractions are resolved to steps rather than to epochs so that a 6-epoch CPU run keeps the paper's
12/20/24-of-26 shape instead of rounding two milestones onto the same epoch; for E = 26 both give
exactly epochs 12, 20 and 24. The schedule is stepped once per optimiser step (``LambdaLR``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

# Modules whose parameters never get weight decay (normalisation layers and PReLU slopes).
NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.PReLU,
)


def split_decay(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Return ``(decay, no_decay)`` trainable parameters of ``module``.

    No decay: every parameter of a normalisation layer (BatchNorm/GroupNorm/LayerNorm weight and bias),
    PReLU slopes, and every bias. Decay: all other parameters (convolution and linear weights, and
    parameters registered directly on a module such as a margin head's class centres ``weight``).
    Each parameter is returned once even if it is shared.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for mod in module.modules():
        for name, p in mod.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(mod, NO_DECAY_MODULES) or name.endswith("bias"):
                no_decay.append(p)
            else:
                decay.append(p)
    return decay, no_decay


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """Two SGD parameter groups over all ``modules``: ``decay`` (weight_decay) and ``no_decay`` (0)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for m in modules:
        d, n = split_decay(m)
        decay += [p for p in d if id(p) not in seen]
        seen.update(id(p) for p in d)
        no_decay += [p for p in n if id(p) not in seen]
        seen.update(id(p) for p in n)
    groups = [
        {"params": decay, "weight_decay": float(weight_decay), "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    modules: Iterable[nn.Module], *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.SGD:
    """SGD over :func:`param_groups` (momentum and weight decay as in the recipe)."""
    return torch.optim.SGD(param_groups(modules, weight_decay), lr=lr, momentum=momentum)


def milestone_steps(milestones: Sequence[float], epochs: int, steps_per_epoch: int) -> list[int]:
    """Resolve milestones to optimiser steps: fractions (< 1) of the run, or epoch numbers (>= 1)."""
    if epochs <= 0 or steps_per_epoch <= 0:
        raise ValueError(f"epochs and steps_per_epoch must be positive, got {epochs}, {steps_per_epoch}")
    total = epochs * steps_per_epoch
    out = []
    for f in milestones:
        if f <= 0:
            raise ValueError(f"milestones must be positive, got {f}")
        if f < 1:
            out.append(int(round(f * total)))
        else:
            if float(f) != int(f):
                raise ValueError(f"a milestone >= 1 is an epoch number and must be an integer, got {f}")
            out.append(int(f) * steps_per_epoch)
    return out


@dataclass
class StepSchedule:
    """Multiplicative LR factor per optimiser step (picklable, for ``torch.optim.lr_scheduler.LambdaLR``)."""

    milestones: list[int]
    gamma: float = 0.1
    warmup_steps: int = 0

    def __call__(self, step: int) -> float:
        factor = self.gamma ** sum(1 for m in self.milestones if step >= m)
        if self.warmup_steps > 0 and step < self.warmup_steps:
            factor *= (step + 1) / self.warmup_steps
        return factor


def build_schedule(
    milestones: Sequence[float], gamma: float, warmup_epochs: float, epochs: int, steps_per_epoch: int
) -> StepSchedule:
    """The :class:`StepSchedule` for a run (see the module docstring for the formula)."""
    if warmup_epochs < 0 or not math.isfinite(warmup_epochs):
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    return StepSchedule(
        milestones=milestone_steps(milestones, epochs, steps_per_epoch),
        gamma=float(gamma),
        warmup_steps=int(round(warmup_epochs * steps_per_epoch)),
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: StepSchedule
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` stepped once per optimiser step (``scheduler.step()`` after ``optimizer.step()``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)
