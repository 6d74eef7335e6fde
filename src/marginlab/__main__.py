"""``python -m marginlab <stage> ...``: see :func:`marginlab.cli.main`."""

import sys

from marginlab.cli import main

sys.exit(main())
