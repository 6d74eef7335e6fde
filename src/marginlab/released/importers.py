"""The import formats: ``marginlab import-model SRC --format NAME`` finds its importer here.

An importer is ``(src: Path, out: Path, arch: str | None) -> Path`` in a module of this package,
decorated with :func:`register_importer`; it reads ``src`` as data only (no unpickling of objects, no
code from the file), checks every key and shape against the architecture it names, and writes a model
folder ``out`` that :func:`marginlab.released.embedder.load_embedder` reads. Modules are imported on
first use (:func:`discover`), so the registry itself loads no torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from marginlab.core.config.released import RELEASED_FORMATS
from marginlab.core.name_registry import Registry

__all__ = ["IMPORTERS", "Importer", "discover", "import_model", "register_importer"]


@dataclass(frozen=True)
class Importer:
    """A format name, the architectures it accepts (empty: ``--arch`` not used) and its function.

    ``infers_arch``: the importer reads the architecture off the file when ``--arch`` is not given (it is
    then called with ``None``), and checks the file against it when it is."""

    name: str
    run: Callable[[Path, Path, "str | None"], Path]
    archs: tuple[str, ...] = ()
    summary: str = ""
    infers_arch: bool = False


IMPORTERS: Registry[Importer] = Registry("import format")
#: The format names, declared with the params schema (torch-free) so the command line and params share them.
FORMATS = RELEASED_FORMATS


def register_importer(name: str, *, archs: tuple[str, ...] = (), summary: str = "", infers_arch: bool = False):
    """Decorator: register ``function`` as the importer of format ``name`` (one of :data:`FORMATS`)."""

    def decorate(function: Callable[[Path, Path, "str | None"], Path]):
        if name not in FORMATS:
            raise ValueError(f"import format {name!r} is not declared in marginlab.released.importers.FORMATS")
        IMPORTERS.add(name, Importer(name, function, tuple(archs), summary, infers_arch))
        return function

    return decorate


def discover() -> None:
    """Import every module of :mod:`marginlab.released` (each registers what it implements)."""
    import marginlab.released as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        importlib.import_module(f"{package.__name__}.{info.name}")


def import_model(src: str | Path, fmt: str, out: str | Path, arch: str | None = None) -> Path:
    """Import ``src`` (format ``fmt``, architecture ``arch`` where the format needs one; formats that read it off
    the file take ``None``) into folder ``out``."""
    discover()
    importer = IMPORTERS.get(fmt)
    if importer.archs and arch is None and not importer.infers_arch:
        raise ValueError(f"--arch is required for format {fmt!r} ({', '.join(importer.archs)})")
    if arch is not None and importer.archs and arch not in importer.archs:
        raise ValueError(f"format {fmt!r} has no architecture {arch!r}; allowed: {', '.join(importer.archs)}")
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file (the model to import)")
    return importer.run(src, Path(out), arch)
