"""``python -m lab``: the same as ``scripts/lab``."""

import sys

from .run import main

sys.exit(main())
