"""Every backbone ``model.backbone`` may name, declared once: the IR-ResNets (AdaFace's and insightface's) and
the ``timm/`` family.

The config schema checks names against :data:`BACKBONE_SPECS`; each module of :mod:`marginlab.backbones`
registers the builder of the names it implements (:func:`marginlab.backbones.backbone_registry.register_backbone`).
Kept apart from the torch code so that reading ``params.yaml`` loads no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from marginlab.core.name_registry import Registry

__all__ = ["BACKBONE_SPECS", "BackboneSpec", "TIMM_PREFIX", "check_timm_model"]

TIMM_PREFIX = "timm/"


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone name (or a family prefix such as ``timm/``) and the options ``build_backbone`` accepts for it.

    ``check_name`` (families) refuses a member name the config must not accept, before any stage runs.
    """

    name: str
    options: tuple[str, ...]
    family: bool = False
    check_name: Optional[Callable[[str], None]] = field(default=None, compare=False)


def check_timm_model(model_name: str) -> None:
    """``ValueError`` unless timm has ``model_name`` (imports timm, and so torch: only for a timm backbone)."""
    import timm

    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name.split('_')[0]}*")[:10]
        hint = f"; similar names: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown timm model {model_name!r} (see timm.list_models()){hint}")


BACKBONE_SPECS: Registry[BackboneSpec] = Registry("backbone")
for _name in ("ir_18", "ir_34", "ir_50", "ir_100", "ir_200"):
    BACKBONE_SPECS.add(_name, BackboneSpec(_name, ("width", "dropout")))
# insightface arcface_torch's IR-ResNets, under their own module names (released backbone.pth files load as they
# are; marginlab.backbones.iresnet_insightface): not AdaFace's net, see that module for the differences.
for _name in ("insightface_r18", "insightface_r34", "insightface_r50", "insightface_r100", "insightface_r200"):
    BACKBONE_SPECS.add(_name, BackboneSpec(_name, ("width", "dropout")))
# timm models have no width multiplier: "width" is accepted at 1.0 only, so one ModelConfig fits both.
BACKBONE_SPECS.add(
    TIMM_PREFIX,
    BackboneSpec(
        TIMM_PREFIX,
        ("width", "dropout", "timm_kwargs"),
        family=True,
        check_name=lambda name: check_timm_model(name[len(TIMM_PREFIX) :]),
    ),
    prefix=True,
)
