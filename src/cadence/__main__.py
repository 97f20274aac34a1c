"""``python -m cadence``: the same command line as ``cadence``."""

import sys

from cadence.cli import main

sys.exit(main())
