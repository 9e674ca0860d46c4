"""blkfleet's local stand-in for ansible-test's get-pip bootstrap script (no download).

ansible-test creates its virtual environments without pip, then runs ``get-pip-<version>.py`` from
``~/.ansible/test/cache/get_pip_<version>.py`` (downloading it from a host this machine cannot reach). It runs
the script with runpy as ``__main__`` and pip's arguments, e.g. ``--disable-pip-version-check pip==24.2
--no-setuptools --no-wheel``. This stand-in bootstraps pip with the interpreter's own ``ensurepip``, then
installs the requested packages with that pip from the configured package index.

Written there by tests/ansible/run_ansible_tests.sh. Marker for that script: BLKFLEET-GET-PIP-STANDIN
"""

import ensurepip
import os
import runpy
import sys


def main():
    saved = dict(os.environ)
    # ensurepip points PIP_CONFIG_FILE at /dev/null; restore the environment afterwards so that pip keeps the
    # machine's index and CA settings.
    ensurepip.bootstrap(upgrade=True)
    os.environ.clear()
    os.environ.update(saved)
    args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
    sys.argv = ['pip', 'install'] + args
    runpy.run_module('pip', run_name='__main__', alter_sys=True)


main()
