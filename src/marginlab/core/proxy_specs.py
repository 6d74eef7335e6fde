"""Every quality proxy ``runs.<name>.proxy`` may name, declared once (the signal AdaFace's margin reads).

The config schema checks names against :data:`PROXY_SPECS`; :mod:`marginlab.train.proxy` registers the
torch implementation of each (:func:`marginlab.train.proxy.register_proxy`). Kept apart from it so that
reading ``params.yaml`` loads no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from marginlab.core.name_registry import Registry

__all__ = ["PROXY_SPECS", "ProxySpec"]


@dataclass(frozen=True)
class ProxySpec:
    """A proxy's name and ``probe_signal``: the probe column its ẑ is computed from (the signal trained with)."""

    name: str
    probe_signal: str


PROXY_SPECS: Registry[ProxySpec] = Registry("quality proxy")
for _spec in (
    ProxySpec("norm", probe_signal="norm"),  # the feature norm ||z||: AdaFace as published
    ProxySpec("brisque", probe_signal="iq"),  # the stored image's BRISQUE image quality
    ProxySpec("p_yi", probe_signal="p_yi"),  # the softmax probability of the target class
):
    PROXY_SPECS.add(_spec.name, _spec)
