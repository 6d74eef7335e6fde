"""Stage ``analyze``: correlations (Fig. 2), augmentation by norm, Table 1, main comparison, claim verdicts (see `python -m marginlab analyze --help`)."""

import sys

from marginlab.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["analyze", *sys.argv[1:]]))
