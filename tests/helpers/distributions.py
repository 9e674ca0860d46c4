"""The distributions a user installs, built from this checkout: the wheel (and sdist) by ``python -m build``, the
collection tarball by ``ansible-galaxy collection build`` (tests/packaging, tests/quickstart)."""

import os
import subprocess
import sys

from helpers import REPO
from helpers.adhoc import ansible_bin

COLLECTION = REPO / "collections" / "ansible_collections" / "blkfleet" / "core"


def build(out, sdist=True):
    """Build into the directory ``out``; the paths by kind: ``wheel``, ``collection`` (and ``sdist``)."""
    formats = ["--sdist", "--wheel"] if sdist else ["--wheel"]
    run = subprocess.run([sys.executable, "-m", "build", *formats, "--outdir", str(out), str(REPO)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    run = subprocess.run([ansible_bin("ansible-galaxy"), "collection", "build", "--output-path", str(out),
                          str(COLLECTION)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    names = os.listdir(out)
    ends = {"wheel": ".whl", "collection": "core-0.1.0.tar.gz"}
    if sdist:
        ends["sdist"] = "blkfleet-0.1.0.tar.gz"
    return {kind: os.path.join(out, next(n for n in names if n.endswith(end))) for kind, end in ends.items()}
