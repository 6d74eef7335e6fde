"""YAML from a file a user (or anyone) wrote: safe, bounded, and fast enough for a 1 MB params file.

``yaml.safe_load`` constructs no objects, but it is not bounded: a 1.3 kB file of nested aliases
("billion laughs") expands to billions of values and hangs, and 400,000 nested brackets crash the
interpreter in libyaml's recursive node composer. :func:`load_bounded` builds the document in one pass
over libyaml's event stream (an iterative parser, safe at any depth), counting values as it goes: an
alias counts as the size of what it names, nesting and the total are bounded, and a recursive alias is
refused. The pass also skips PyYAML's node graph, which made ``safe_load`` of a 1 MB grid take 1.7 s.

Merge keys (``<<: *defaults``) and explicitly tagged scalars (``!!str 12``) are built as PyYAML builds them.
Documents using rarer YAML features (tagged collections such as ``!!set``, collections as mapping keys,
several documents) are handed to ``yaml.load`` with the safe loader after the same bounds
check, so the result is always what ``yaml.safe_load`` returns.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_YAML_DEPTH", "MAX_YAML_VALUES", "YamlLimitError", "load_bounded"]

#: Most values a document may expand to through aliases (``*name``).
MAX_YAML_VALUES = 1_000_000
#: Deepest nesting of mappings and sequences (a params file needs 5).
MAX_YAML_DEPTH = 64

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"


class YamlLimitError(ValueError):
    """A document over one of the bounds (or with a recursive alias); nothing was built."""


class _Fallback(Exception):
    """A feature the event builder leaves to PyYAML's own constructor."""


class _Scalars:
    """Plain-scalar resolution and construction, memoised: a grid repeats the same few words."""

    def __init__(self) -> None:
        self._loader = _SafeLoader("")
        self._cache: dict[tuple[str, bool], Any] = {}

    def __call__(self, event: yaml.ScalarEvent) -> Any:
        explicit = event.tag not in (None, "!")  # e.g. !!str 12: constructed by that tag's constructor
        plain = bool(event.implicit[0]) and event.tag is None
        key = (event.value, event.tag if explicit else plain)
        try:
            return self._cache[key]
        except KeyError:
            pass
        if explicit:
            tag = event.tag
        else:
            tag = self._loader.resolve(yaml.ScalarNode, event.value, (plain, not plain)) if plain else _STR
        if tag == _STR:
            value = event.value
        else:
            make = self._loader.yaml_constructors.get(tag)
            if make is None:  # an unknown tag (PyYAML's error), or the merge key "<<" outside a mapping key
                raise _Fallback
            try:
                value = make(self._loader, yaml.ScalarNode(tag, event.value))
            except (ValueError, TypeError, OverflowError) as err:  # "!!int nope": PyYAML lets ValueError out
                raise _bad_value(tag, event.value, err) from None
            if isinstance(value, (list, dict, set, bytearray)):  # never shared between places
                raise _Fallback
        if len(self._cache) < 100_000:
            self._cache[key] = value
        return value

    def close(self) -> None:
        self._loader.dispose()


def load_bounded(text: str, limit: int = MAX_YAML_VALUES, max_depth: int = MAX_YAML_DEPTH) -> Any:
    """``yaml.safe_load(text)``, refused with :class:`YamlLimitError` when aliases expand it to more than
    ``limit`` values, when it nests deeper than ``max_depth``, or when an alias contains itself."""
    try:
        return _build(text, limit, max_depth)
    except _Fallback:
        _build(text, limit, max_depth, construct=False)  # the bounds, over the whole document
        try:
            return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - the safe loader
        except (ValueError, TypeError, OverflowError) as err:
            raise _bad_value("a tagged value", "", err) from None


def _build(text: str, limit: int, max_depth: int, construct: bool = True) -> Any:
    scalars = _Scalars()
    anchors: dict[str, tuple[Any, int]] = {}  # anchor -> (value, values it expands to)
    open_anchors: set[str] = set()
    # one frame per open collection: [container, anchor, size, pending mapping key (or _NO_KEY / _MERGE),
    # mappings merged into it through "<<" (or None)]
    stack: list[list] = []
    total, documents, root = 0, 0, None
    try:
        for event in yaml.parse(text, Loader=_SafeLoader):
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1 and construct:
                    raise _Fallback  # yaml.load raises its own "expected a single document" error
                continue
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= max_depth:
                    raise YamlLimitError(f"values nested more than {max_depth} levels deep; a params file needs a few")
                if construct and (event.tag not in (None, "!") or (stack and stack[-1][3] is _NO_KEY
                                                                   and isinstance(stack[-1][0], dict))):
                    raise _Fallback  # a tagged collection, or a collection used as a mapping key
                container = {} if isinstance(event, yaml.MappingStartEvent) else []
                stack.append([container, event.anchor, 1, _NO_KEY, None])
                total += 1
                if event.anchor:
                    open_anchors.add(event.anchor)
                if total > limit:
                    raise YamlLimitError(_too_many(limit))
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                value, anchor, size, _, merged = stack.pop()
                if merged:  # PyYAML's order: merged entries first (earlier merges lose), explicit keys last
                    flat: dict = {}
                    for entries in merged:
                        flat.update(entries)
                    flat.update(value)
                    value = flat
                if anchor:
                    open_anchors.discard(anchor)
                    anchors[anchor] = (value, size)
            elif isinstance(event, yaml.ScalarEvent):
                if (construct and stack and stack[-1][3] is _NO_KEY and isinstance(stack[-1][0], dict)
                        and event.value == "<<" and event.tag is None and event.implicit[0] and not event.anchor):
                    stack[-1][3] = _MERGE  # a merge key: its value's entries go under the explicit ones
                    total += 1
                    continue
                value, size = (scalars(event) if construct else None), 1
                total += 1
                if event.anchor:
                    anchors[event.anchor] = (value, 1)
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor in open_anchors:
                    raise YamlLimitError(f"the alias *{event.anchor} refers to a value that contains it "
                                         "(a recursive YAML alias)")
                if event.anchor not in anchors and construct:
                    raise _Fallback  # PyYAML names the unknown anchor
                value, size = anchors.get(event.anchor, (None, 0))
                total += size
            else:
                continue
            if total > limit:
                raise YamlLimitError(_too_many(limit))
            if not stack:
                root = value
                continue
            frame = stack[-1]
            frame[2] += size
            if not construct:
                continue
            container = frame[0]
            if isinstance(container, list):
                container.append(value)
            elif frame[3] is _MERGE:
                if isinstance(value, dict):
                    merged = [value]
                elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
                    merged = list(reversed(value))  # the first mapping of a merge list wins
                else:
                    raise _Fallback  # PyYAML reports the bad merge value
                frame[4] = (frame[4] or []) + merged
                frame[3] = _NO_KEY
            elif frame[3] is _NO_KEY:
                try:
                    hash(value)
                except TypeError:
                    raise _Fallback from None
                frame[3] = value
            else:
                container[frame[3]] = value
                frame[3] = _NO_KEY
    finally:
        scalars.close()
    return root


_NO_KEY = object()
_MERGE = object()


def _bad_value(tag: str, value: str, err: Exception) -> yaml.YAMLError:
    """PyYAML's constructors raise bare ValueErrors ("!!int nope"); callers handle YAMLError."""
    return yaml.constructor.ConstructorError(None, None, f"cannot read {value!r} as {tag}: {err}", None)


def _too_many(limit: int) -> str:
    return f"its YAML aliases (*name) expand to more than {limit:,} values; write the values out, or use fewer nested aliases"
