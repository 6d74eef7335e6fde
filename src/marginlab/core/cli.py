"""The ``marginlab`` command (:func:`main`: ``marginlab <stage> [RUN] [--params FILE]``, every stage of
:mod:`marginlab.stages`) and what it does with a failure: one line on stderr, exit status 2, no traceback
(Ctrl-C: one line, exit status 130, the shell's convention for SIGINT).

``run_stage(body, errors)`` runs ``body()`` (returning the exit status). The library's own errors
listed in ``errors`` (a bad config, a malformed input, a refused file) are printed as
``error: <message>``; any other ``OSError`` (a full disk, a read-only output folder, no permission)
as ``error: cannot write <path>: <reason>`` or ``error: cannot read <path>: <reason>``. Outputs are
written atomically (:mod:`marginlab.core.io`), so a failed stage leaves no partial file behind.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from collections.abc import Callable

from marginlab.core.io import WRITE_ERRNOS, OutputWriteError

__all__ = ["describe_os_error", "main", "run_stage"]


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


def main(argv: list[str] | None = None) -> int:
    """``marginlab <stage> [RUN] [--params FILE] [stage options]``: run one registered stage.

    Written once for every stage: the command line, logging, the OpenMP wait policy (set before the
    stage's imports load torch) and the error contract of :func:`run_stage`.
    """
    import argparse
    import logging

    from marginlab.core.config import ConfigError
    from marginlab.stages import STAGES, load_stage

    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "marginlab <stage> [RUN] [--params FILE] [options]   (python -m marginlab ...)"
    if not argv or argv[0] in ("-h", "--help"):
        stages, tools = (
            [f"  {i.name:<14} {i.summary}" for _, i in STAGES.items() if i.pipeline is kind] for kind in (True, False)
        )
        print(
            f"usage: {usage}\n\nstages:\n"
            + "\n".join(stages)
            + "\n\nother commands:\n"
            + "\n".join(tools)
            + "\n\n'marginlab <command> --help' lists a command's options."
        )
        return 0 if argv else 2
    try:
        info = STAGES.get(argv[0])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # Sleeping (not spinning) OpenMP waits: spinning threads collapsed 2-thread training to ~1/3 of its
    # speed on a shared CPU (bench/bench_train.py, marginlab.train.runtime). Must precede torch's import.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    module = load_stage(info.name)
    parser = argparse.ArgumentParser(prog=f"marginlab {info.name}", description=(module.__doc__ or "").splitlines()[0])
    if info.per_run:
        parser.add_argument("run", help=f"the name of an entry of '{info.foreach}' in params.yaml")
    parser.add_argument("--params", default=None, help="params file (default: params.yaml of the pipeline root)")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def body() -> int:
        params = None
        if info.params is not None:  # validated once, then narrowed to what the stage declares
            from marginlab.core.config import load_params
            from marginlab.core.params_view import restrict

            # Relative paths in params resolve against the pipeline root: the working directory, or --root.
            root = Path(getattr(args, "root", None) or ".")
            path = Path(args.params) if args.params is not None else root / "params.yaml"
            loaded = load_params(path, root=root, require_inputs=info.require_inputs)
            params = restrict(
                loaded, info.declared, stage=info.name, run=getattr(args, "run", None), section=info.foreach
            )
        return int(module.run(args, params))

    return run_stage(body, (*module.ERRORS, ConfigError))
