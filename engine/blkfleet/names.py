"""Names that become paths or arguments: recorded device names and the base names of per-CPU files.

A recorded device name is a kernel name as blktrace writes it (``sda``, ``nvme0n1``, ``dm-0``; a ``/`` in the
kernel name is written as ``_``, as in ``cciss_c0d0``). It never starts with ``-`` (it would read as an option),
holds no ``/``, whitespace or control character, and no part between ``_`` is ``.`` or ``..``.
"""

import re

from .errors import BlkfleetError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]*")
MAX_NAME = 100


def name_problem(name):
    """Why ``name`` is not a safe device or base name, or None."""
    if not isinstance(name, str):
        return "not a string"
    if not name or len(name) > MAX_NAME:
        return f"must be 1 to {MAX_NAME} characters"
    if not NAME_RE.fullmatch(name):
        return "only letters, digits and '.', '_', '+', '@', '-' are allowed, not first"
    if any(part in (".", "..") for part in name.split("_")):
        return "'.' and '..' are not allowed between '_'"
    return None


def check_name(name, what="device name"):
    """``name`` if it is safe, else BlkfleetError naming it."""
    problem = name_problem(name)
    if problem:
        raise BlkfleetError(f"invalid {what} {name!r}: {problem}")
    return name
