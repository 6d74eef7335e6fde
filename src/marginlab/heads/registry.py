"""The head registry: the torch implementation of each head declared in :mod:`marginlab.head_specs`.

A head is a :class:`~marginlab.heads.base.MarginHead` subclass in its own module of this package,
decorated with :func:`register_head`, plus its declaration (name and hyperparameters) in
``head_specs.py``. The package imports every module in its folder on first import (:func:`discover`);
the config schema, the gradient-scaling analysis and the tables find a head from those two places.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

from marginlab.head_specs import HEAD_SPECS, head_names
from marginlab.core.name_registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from marginlab.heads.base import MarginHead

__all__ = ["HEADS", "register_head", "head_names", "head_defaults", "head_class", "build_head", "discover"]

#: name -> head class, filled by :func:`register_head` as the head modules are imported.
HEADS: Registry[type["MarginHead"]] = Registry("head")


def register_head(cls: type["MarginHead"]) -> type["MarginHead"]:
    """Class decorator: bind ``cls`` to its declaration ``HEAD_SPECS[cls.name]`` and register it."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name == "base":
        raise ValueError(f"{cls.__qualname__}: a registered head needs a class attribute 'name'")
    if name not in HEAD_SPECS.names():
        raise ValueError(f"head {name!r} ({cls.__qualname__}) has no declaration: add a HeadSpec for it to "
                         f"marginlab/head_specs.py (declared: {', '.join(HEAD_SPECS.names())})")
    cls.spec = HEAD_SPECS.get(name)
    HEADS.add(name, cls)
    return cls


def discover() -> None:
    """Import every module of the ``marginlab.heads`` package (each head registers itself)."""
    import marginlab.heads as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        importlib.import_module(f"{package.__name__}.{info.name}")


def head_class(name: str) -> type["MarginHead"]:
    return HEADS.get(name)


def head_defaults(name: str) -> dict[str, Any]:
    """The hyperparameters ``name`` accepts, with their (paper) default values."""
    return HEAD_SPECS.get(name).defaults()


def build_head(name: str, embedding_size: int, num_classes: int, **hyperparameters: Any) -> "MarginHead":
    """Build margin head ``name`` for ``num_classes`` classes of ``embedding_size``-d embeddings.

    Unknown names or hyperparameters raise ``ValueError`` listing what is allowed; out-of-range values
    raise ``ValueError`` naming the hyperparameter and its range.
    """
    return head_class(name)(embedding_size, num_classes, **hyperparameters)
