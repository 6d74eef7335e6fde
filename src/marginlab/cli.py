"""What every stage entry point does with a failure: one line on stderr, exit status 2, no traceback
(Ctrl-C: one line, exit status 130, the shell's convention for SIGINT).

``run_stage(body, errors)`` runs ``body()`` (returning the exit status). The library's own errors
listed in ``errors`` (a bad config, a malformed input, a refused file) are printed as
``error: <message>``; any other ``OSError`` (a full disk, a read-only output folder, no permission)
as ``error: cannot write <path>: <reason>`` or ``error: cannot read <path>: <reason>``. Outputs are
written atomically (:mod:`marginlab.io`), so a failed stage leaves no partial file behind.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from marginlab.io import WRITE_ERRNOS, OutputWriteError

__all__ = ["describe_os_error", "run_stage"]


def describe_os_error(err: OSError) -> str:
    """``cannot write <path>: <reason>`` (or ``cannot read``) for an ``OSError``, reason in lower case."""
    if isinstance(err, OutputWriteError):
        return str(err)
    reason = (err.strerror or str(err)).strip()
    reason = reason[:1].lower() + reason[1:]
    if err.filename is None:
        return reason
    verb = "write" if err.errno in WRITE_ERRNOS else "read"
    return f"cannot {verb} {os.fsdecode(err.filename)}: {reason}"


def run_stage(body: Callable[[], int], errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a stage's ``body``; known ``errors`` and every ``OSError`` become ``error: ...`` and exit 2."""
    try:
        return body()
    except KeyboardInterrupt:  # Ctrl-C: the atomic writers have removed their temporary files on the way out
        print("error: interrupted (Ctrl-C); outputs left as they were before this run", file=sys.stderr)
        return 130
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 2
