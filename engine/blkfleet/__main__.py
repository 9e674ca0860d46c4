"""``python -m blkfleet`` and the engine zipapp entry point."""

import sys

from .cli import main

sys.exit(main())
