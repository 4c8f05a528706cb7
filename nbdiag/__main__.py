"""``python -m nbdiag demo``."""

import sys

from nbdiag.cli import main

sys.exit(main())
