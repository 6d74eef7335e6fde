"""Stage ``train@RUN``: train one run of the grid into ``runs/<RUN>/`` (see `python -m marginlab train --help`)."""

import sys

from marginlab.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
