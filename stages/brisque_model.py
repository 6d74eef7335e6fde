"""Stage ``brisque_model``: obtain the LIVE BRISQUE SVR and convert it for pyiqa (see `python -m marginlab brisque_model --help`)."""

import sys

from marginlab.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["brisque_model", *sys.argv[1:]]))
