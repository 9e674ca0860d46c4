"""``engine.pyz``: the engine as one deterministic zipapp, built from the importable ``blkfleet`` package.

Layout as ``python -m zipapp`` makes it: a ``#!/usr/bin/env python3`` line, then a zip holding ``__main__.py``
(which calls ``blkfleet.cli.main``) and ``blkfleet/**.py`` plus ``blkfleet/schemas/*.json``. No ``__pycache__``,
no hidden or editor files, no directory entries. Entries are sorted, dated 1980-01-01, mode 0644, and *stored*
(not deflated): the bytes then depend on the sources alone, not on the zlib version of the building host, so
every controller builds the same engine and content-addressed pushes stay idempotent.
"""

import io
import os
import stat
import zipfile
import zipimport

from ..files import atomic_write

SHEBANG = b"#!/usr/bin/env python3\n"
MAIN = b'"""blkfleet engine zipapp."""\n\nimport sys\n\nfrom blkfleet.cli import main\n\nsys.exit(main())\n'
DATE_TIME = (1980, 1, 1, 0, 0, 0)
PACKAGE = "blkfleet"


def _wanted(rel):
    """Does a file of the package (path relative to it, '/'-separated) belong in the engine?"""
    parts = rel.split("/")
    if any(p.startswith(".") or p == "__pycache__" for p in parts):
        return False
    if rel.endswith(".py"):
        return True
    return len(parts) == 2 and parts[0] == "schemas" and rel.endswith(".json")


def package_files():
    """Sorted [(archive name, bytes)] of the engine's files, from a directory or from a running zipapp."""
    import blkfleet

    loader = getattr(blkfleet.__spec__, "loader", None)
    if isinstance(loader, zipimport.zipimporter):
        return _from_zip(loader.archive, loader.prefix)
    root = os.path.dirname(os.path.abspath(blkfleet.__file__))
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for name in filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if _wanted(rel) and stat.S_ISREG(os.lstat(path).st_mode):
                with open(path, "rb") as f:
                    found.append((f"{PACKAGE}/{rel}", f.read()))
    return sorted(found)


def _from_zip(archive, prefix):
    top = prefix.replace(os.sep, "/") + PACKAGE + "/"
    found = []
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if name.startswith(top) and not name.endswith("/") and _wanted(name[len(top):]):
                found.append((PACKAGE + "/" + name[len(top):], z.read(name)))
    return sorted(found)


def with_package_inits(files):
    """Add an empty ``__init__.py`` to every directory of modules that lacks one.

    zipimport cannot import implicit namespace packages (a directory of modules without ``__init__.py``), which
    a source tree tolerates; inside engine.pyz such a package would fail with ModuleNotFoundError.
    """
    names = {name for name, _ in files}
    packages = {name.rsplit("/", 1)[0] for name in names if name.endswith(".py")}
    missing = sorted(f"{pkg}/__init__.py" for pkg in packages if f"{pkg}/__init__.py" not in names)
    return sorted(list(files) + [(name, b"") for name in missing])


def engine_bytes(files=None):
    """The zipapp's bytes: the same sources always give the same bytes."""
    files = with_package_inits(package_files() if files is None else files)
    if not any(name == f"{PACKAGE}/cli.py" for name, _ in files):
        raise RuntimeError("blkfleet package sources not found (no blkfleet/cli.py)")
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in [("__main__.py", MAIN)] + files:
            info = zipfile.ZipInfo(name, DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # Unix, so that external_attr carries the mode
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            z.writestr(info, data)
    return buf.getvalue()


def build_engine_pyz(path):
    """Write engine.pyz to ``path`` (atomically, mode 0755); return its bytes."""
    data = engine_bytes()
    atomic_write(path, data, 0o755)
    return data
