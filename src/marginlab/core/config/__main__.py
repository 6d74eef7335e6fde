"""``python -m marginlab.core.config [PARAMS]``: validate a params file; exit 2 with every problem listed."""

from __future__ import annotations

import sys
from typing import Optional

from marginlab.core.config.loading import load_params
from marginlab.core.config.problems import ConfigError


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else "params.yaml"
    try:
        params = load_params(path, require_inputs=True)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{path}: valid (preset {params.preset!r}, {len(params.runs)} runs, data.source {params.data.source!r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
