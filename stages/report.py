"""Stage ``report``: the self-contained HTML report of the whole study (see `python -m marginlab report --help`)."""

import sys

from marginlab.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
