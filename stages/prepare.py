"""Stage ``prepare``: build the prepared-data directory (synthetic faces, or ingest of real data) (see `python -m marginlab prepare --help`)."""

import sys

from marginlab.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
