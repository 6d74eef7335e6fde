"""The backbone registry: the torch builder of each name declared in :mod:`marginlab.core.backbone_specs`.

A backbone is a builder ``(name, embedding_size, input_size, **options) -> nn.Module`` in a module of
this package, decorated with :func:`register_backbone`, plus its declaration (name or family prefix,
options) in ``backbone_specs.py``. The package imports every module of its folder on first import
(:func:`discover`); the config schema and :func:`build_backbone` find a backbone from those two places.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from marginlab.core.backbone_specs import BACKBONE_SPECS
from marginlab.core.name_registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["BACKBONES", "BackboneBuilder", "build_backbone", "discover", "register_backbone"]

BackboneBuilder = Callable[..., "nn.Module"]
#: name (or family prefix) -> builder, filled by :func:`register_backbone` as the backbone modules are imported.
BACKBONES: Registry[BackboneBuilder] = Registry("backbone")


def register_backbone(*names: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator: register the builder for each declared name (a family by its prefix, e.g. ``timm/``)."""

    def decorate(builder: BackboneBuilder) -> BackboneBuilder:
        for name in names:
            family = name in BACKBONE_SPECS.families()
            if not family and name not in BACKBONE_SPECS.names():
                raise ValueError(f"backbone {name!r} has no declaration: add a BackboneSpec for it to "
                                 f"marginlab/core/backbone_specs.py (declared: {BACKBONE_SPECS.allowed()})")
            BACKBONES.add(name, builder, prefix=family)
        return builder

    return decorate


def discover() -> None:
    """Import every module of the ``marginlab.backbones`` package (each registers its builders)."""
    import marginlab.backbones as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        importlib.import_module(f"{package.__name__}.{info.name}")


def build_backbone(name: str, embedding_size: int = 512, input_size: int | tuple[int, int] = 112, **options: Any) -> "nn.Module":
    """Build a backbone by name; unknown names or options raise ``ValueError`` listing what is allowed.

    ``ir_*`` options: ``width`` (channel multiplier, default 1.0; channels are ``max(8, round(c·width))``)
    and ``dropout`` (before the output Linear, default 0.4). ``timm/<model>`` options: ``dropout``
    (timm's ``drop_rate``, default 0), ``timm_kwargs`` (passed to ``timm.create_model``) and
    ``width`` (only 1.0).
    """
    if not isinstance(name, str):
        raise ValueError(f"backbone name must be a string, got {name!r}; allowed: {BACKBONE_SPECS.allowed()}")  # noqa: TRY004 (one error type for bad config)
    spec = BACKBONE_SPECS.get(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for backbone {name!r}; allowed: {', '.join(spec.options)}")
    return BACKBONES.get(name)(name, embedding_size, input_size, **options)
