"""How schema violations are reported: one message listing every problem, each with its key path and value."""

from __future__ import annotations

import reprlib
from typing import Any

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A params file that does not match the schema; the message lists every problem."""


class NestedConfigError(ValueError):
    """Problems inside a nested mapping (a run's overrides), each with its own key path."""

    def __init__(self, problems: list[tuple[tuple, str, Any]]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg, _ in problems))


def nested_problems(section: str, model: type[BaseModel], values: dict[str, Any]) -> list[tuple[tuple, str, Any]]:
    """Validate ``values`` against ``model``; the problems with their paths below ``section``."""
    try:
        model(**values)
    except ValidationError as err:
        return [((section, *e["loc"]), problem_message(e), e.get("input")) for e in err.errors()]
    except ValueError as err:  # a head's own range or relation check
        return [((section,), str(err), values)]
    return []


def problem_message(e: dict) -> str:
    """One pydantic error in the schema's words: an unknown key said as such, no "Value error, " prefix."""
    if e["type"] == "extra_forbidden":
        return "unknown key (not in the schema; check spelling)"
    return e["msg"].removeprefix("Value error, ")


#: Problems listed in one error message; a value with thousands of bad elements says how many more.
MAX_LISTED_PROBLEMS = 20


def format_errors(err: ValidationError, source: str) -> str:
    entries: list[tuple[tuple, str, Any]] = []
    for e in err.errors():
        nested = (e.get("ctx") or {}).get("error")
        if isinstance(nested, NestedConfigError):
            entries += [((*e["loc"], *loc), msg, value) for loc, msg, value in nested.problems]
        else:
            entries.append((e["loc"], problem_message(e), e.get("input")))
    lines = [f"invalid configuration in {source}:"]
    for loc, msg, value in entries[:MAX_LISTED_PROBLEMS]:
        key = ".".join(str(p) for p in loc) or "<root>"
        lines.append(f"  - {key}: {msg} (got {short_repr(value)})")
    if len(entries) > MAX_LISTED_PROBLEMS:
        lines.append(f"  ... and {len(entries) - MAX_LISTED_PROBLEMS} more problems")
    return "\n".join(lines)


_REPR = reprlib.Repr()  # Python 3.11: limits are attributes, not constructor arguments
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def short_repr(value: Any, limit: int = 80) -> str:
    """A repr of at most ``limit`` characters that never builds the full repr of a large value
    (a params value can be a huge nested structure; ``repr`` of it would take minutes)."""
    shown = _REPR.repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
