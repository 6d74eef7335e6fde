"""Stage ``released@NAME``: probe one released model of params `released:` (see `python -m marginlab released --help`)."""

import sys

from marginlab.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["released", *sys.argv[1:]]))
