"""The head registry: every head declares itself once, here, and everything else derives from it.

A head is a :class:`~marginlab.heads.base.MarginHead` subclass in its own module of this package,
decorated with :func:`register_head`. The package imports every module in its folder on first import
(:func:`discover`), so adding a head is one new file: the config schema (names, paper defaults from the
``__init__`` signature, ranges from ``hyperparameter_ranges``), the gradient-scaling analysis (its
``gst_variants`` and :meth:`~marginlab.heads.base.MarginHead.set_analysis_state`) and the tables (its
``order``) pick it up from here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from marginlab.heads.base import MarginHead

__all__ = ["HEADS", "register_head", "head_names", "head_defaults", "head_class", "build_head", "discover"]

#: name -> head class, filled by :func:`register_head` as the head modules are imported.
HEADS: dict[str, type["MarginHead"]] = {}


def register_head(cls: type["MarginHead"]) -> type["MarginHead"]:
    """Class decorator: add ``cls`` to :data:`HEADS` under ``cls.name`` (names are unique)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name == "base":
        raise ValueError(f"{cls.__qualname__}: a registered head needs a class attribute 'name'")
    if name in HEADS and HEADS[name] is not cls:
        raise ValueError(f"head name {name!r} is registered twice ({HEADS[name].__qualname__}, {cls.__qualname__})")
    defaults = _signature_defaults(cls)
    if set(defaults) != set(cls.hyperparameter_ranges):
        raise ValueError(f"head {name!r}: __init__ keyword arguments {sorted(defaults)} and hyperparameter_ranges "
                         f"{sorted(cls.hyperparameter_ranges)} must name the same hyperparameters")
    cls.check_hyperparameters(defaults)  # the defaults (paper values) lie in their own ranges
    HEADS[name] = cls
    return cls


def discover() -> None:
    """Import every module of the ``marginlab.heads`` package (each head registers itself)."""
    import marginlab.heads as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        importlib.import_module(f"{package.__name__}.{info.name}")


def head_names() -> tuple[str, ...]:
    """Registered head names in table order (``order``, then name)."""
    return tuple(sorted(HEADS, key=lambda n: (HEADS[n].order, n)))


def head_class(name: str) -> type["MarginHead"]:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; allowed: {', '.join(head_names())}")
    return HEADS[name]


def _signature_defaults(cls: type) -> dict[str, float]:
    sig = inspect.signature(cls.__init__)
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def head_defaults(name: str) -> dict[str, float]:
    """The hyperparameters ``name`` accepts, with their (paper) default values."""
    return _signature_defaults(head_class(name))


def build_head(name: str, embedding_size: int, num_classes: int, **hyperparameters: float) -> "MarginHead":
    """Build margin head ``name`` for ``num_classes`` classes of ``embedding_size``-d embeddings.

    Unknown names or hyperparameters raise ``ValueError`` listing what is allowed; out-of-range values
    raise ``ValueError`` naming the hyperparameter and its range.
    """
    defaults = head_defaults(name)
    unknown = sorted(set(hyperparameters) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {unknown} for head {name!r}; allowed: {', '.join(sorted(defaults))}"
        )
    return HEADS[name](embedding_size, num_classes, **hyperparameters)
