"""A target's install of a bundle into a directory another user can write: the new file's mode is set through its
descriptor, never by its name, which they may have made a link to a file of root's by then (that file became
mode 0644: readable by all)."""

import os
import subprocess
import sys

from helpers import REPO

CHILD = """
import glob, hashlib, io, os, sys
from ansible_collections.blkfleet.core.plugins.module_utils import _install

directory, victim = sys.argv[1], sys.argv[2]


class Swapping(io.BytesIO):
    \"\"\"The bundle's bytes, read while the other user replaces the temporary file with a link to ``victim``.\"\"\"

    def read(self, n=-1):
        for tmp in glob.glob(os.path.join(directory, '.*.partial')):
            if not os.path.islink(tmp):
                os.unlink(tmp)
                os.symlink(victim, tmp)
        return super().read(n)


data = b'bundle bytes'
_install.install_stream(Swapping(data), os.path.join(directory, 'b.tar'), hashlib.sha256(data).hexdigest())
"""


def test_a_temporary_file_swapped_for_a_link_never_gets_its_mode(tmp_path):
    victim = tmp_path / "shadow"
    victim.write_text("secret")
    os.chmod(victim, 0o600)
    (tmp_path / "dest").mkdir()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "dest"), str(victim)],
                          env={**os.environ, "PYTHONPATH": str(REPO / "collections")}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert os.stat(victim).st_mode & 0o777 == 0o600 and victim.read_text() == "secret"
