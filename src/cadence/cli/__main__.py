"""``python -m cadence.cli``: the same as ``python -m cadence``."""

import sys

from cadence.cli import main

sys.exit(main())
