"""Stage ``quality``: BRISQUE and IQ of every prepared image (see `python -m marginlab quality --help`)."""

import sys

from marginlab.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["quality", *sys.argv[1:]]))
