"""Stage ``evaluate@RUN``: evaluate one trained run on every benchmark of the prepared data (see `python -m marginlab evaluate --help`)."""

import sys

from marginlab.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
