"""Build step beyond pyproject.toml: the man pages and bash/zsh completion are generated from the argument parser
of the engine being built (blkfleet.clidocs) and installed under the prefix (share/man/man1,
share/bash-completion/completions, share/zsh/site-functions), so they always match that engine's ``--help``."""

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithCliDocs(build_py):
    def run(self):
        super().run()
        sys.path.insert(0, os.path.join(HERE, "engine"))
        try:
            from blkfleet import clidocs
        finally:
            sys.path.pop(0)
        root = os.path.join(self.get_finalized_command("build").build_base, "cli-docs")
        written = clidocs.write_all(root)
        files = list(self.distribution.data_files or [])
        files += [(directory, paths) for directory, paths in sorted(written.items())]
        self.distribution.data_files = files


setup(cmdclass={"build_py": BuildWithCliDocs})
