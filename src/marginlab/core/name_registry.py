"""One registry pattern for everything chosen by name in ``params.yaml`` (heads, backbones, proxies).

A :class:`Registry` maps names to entries in declaration order and answers an unknown name with a
``ValueError`` that lists the allowed ones, so every "unknown X" message reads the same. Entries may
also be families matched by prefix (``timm/<model_name>``). Torch-free: the config builds on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → entry, in the order entries were added; ``kind`` names them in messages ("head")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._prefixes: dict[str, T] = {}

    def add(self, name: str, entry: T, *, prefix: bool = False) -> T:
        """Register ``entry`` under ``name`` (a name family ``name<anything>`` if ``prefix``); names are unique."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        table = self._prefixes if prefix else self._entries
        if name in table and table[name] is not entry:
            raise ValueError(f"{self.kind} name {name!r} is registered twice")
        table[name] = entry
        return entry

    def register(self, name: str, *, prefix: bool = False) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry, prefix=prefix)

    def get(self, name: str) -> T:
        """The entry for ``name`` (exact names first, then prefix families), else ``ValueError``."""
        if isinstance(name, str):
            if name in self._entries:
                return self._entries[name]
            for prefix, entry in self._prefixes.items():
                if name.startswith(prefix) and len(name) > len(prefix):
                    return entry
        raise ValueError(f"unknown {self.kind} {name!r}; allowed: {self.allowed()}")

    def allowed(self) -> str:
        """The allowed names as a message fragment: ``a, b or 'timm/<name>'``."""
        names = ", ".join(self._entries)
        families = " or ".join(f"'{p}<name>'" for p in self._prefixes)
        return f"{names} or {families}" if names and families else names or families

    def names(self) -> tuple[str, ...]:
        """The exact names, in declaration order (prefix families excluded)."""
        return tuple(self._entries)

    def families(self) -> tuple[str, ...]:
        """The prefixes of the name families, in declaration order."""
        return tuple(self._prefixes)

    def remove(self, name: str) -> T:
        """Undo :meth:`add` of ``name`` (a name or a family's prefix), e.g. a test's temporary entry."""
        for table in (self._entries, self._prefixes):
            if name in table:
                return table.pop(name)
        raise ValueError(f"unknown {self.kind} {name!r}; allowed: {self.allowed()}")

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def values(self) -> Iterator[T]:
        return iter(self._entries.values())

    def discard(self, name: str) -> None:
        """Unregister exact name ``name`` if present (tests that register an entry for a while)."""
        self._entries.pop(name, None)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        try:
            self.get(name)  # type: ignore[arg-type]
        except ValueError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
