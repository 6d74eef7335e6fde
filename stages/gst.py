"""Stage ``gst``: Fig. 3 of the paper — |GST| maps and curves of every registered margin head on the two-class toy (see `python -m marginlab gst --help`)."""

import sys

from marginlab.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["gst", *sys.argv[1:]]))
