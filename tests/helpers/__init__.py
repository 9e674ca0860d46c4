"""Helpers shared by the test modules (``from helpers.synth import rec``), and where things are.

pyproject's pytest ``pythonpath`` puts ``engine`` and ``tests`` on sys.path, so ``blkfleet`` and ``helpers``
import from any test module; no test adds to sys.path itself.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "engine"
DATA = REPO / "tests" / "data"  # real-kernel traces, each workload with its meta.json (capture_fixtures.py)
SCHEMAS = ENGINE / "blkfleet" / "schemas"
ENV = {**os.environ, "PYTHONPATH": str(ENGINE)}  # for ``python -m blkfleet`` in a subprocess
