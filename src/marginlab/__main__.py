"""``python -m marginlab <stage> ...``: see :func:`marginlab.core.cli.main`."""

import sys

from marginlab.core.cli import main

sys.exit(main())
