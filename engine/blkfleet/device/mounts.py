"""Who uses a block device: its mounts (``/proc/self/mountinfo``) and swap areas (``/proc/swaps``)."""

import os
import re

MOUNTINFO = "/proc/self/mountinfo"
SWAPS = "/proc/swaps"
_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field):
    """Undo the octal escapes of mountinfo fields (``\\040`` for a space)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def mountinfo():
    """The mounts: ``dev`` (``MAJOR:MINOR``), ``mountpoint``, ``fstype``, ``source``."""
    mounts = []
    for line in _lines(MOUNTINFO):
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 3:
            continue
        mounts.append({"dev": fields[2], "mountpoint": _unescape(fields[4]), "fstype": fields[sep + 1],
                       "source": _unescape(fields[sep + 2])})
    return mounts


def swap_numbers():
    """{``MAJOR:MINOR``: path} of the block devices in use as swap."""
    found = {}
    for line in _lines(SWAPS)[1:]:
        if not line.split():
            continue
        path = _unescape(line.split()[0])
        try:
            rdev = os.stat(path).st_rdev
        except OSError:
            continue
        if rdev:
            found[f"{os.major(rdev)}:{os.minor(rdev)}"] = path
    return found


def users(numbers, mounts=None, swaps=None):
    """What uses any of the devices ``numbers`` (``MAJOR:MINOR`` strings): its mount points, and ``swap PATH``
    for a swap area. ``mounts`` and ``swaps``: :func:`mountinfo` and :func:`swap_numbers`, read when None."""
    mounts = mountinfo() if mounts is None else mounts
    swaps = swap_numbers() if swaps is None else swaps
    found = [m["mountpoint"] for m in mounts if m["dev"] in numbers]
    return found + [f"swap {path}" for number, path in sorted(swaps.items()) if number in numbers]
