"""What a block device holds, probed the way a replay probes a write target (blkfleet.replay.signatures):
``blkid -p`` when it is installed, else the internal signature table read with O_DIRECT."""

import os
import stat

from ..errors import BlkfleetError
from ..replay import signatures

PROBES = ("auto", "blkid", "internal", "none")


def empty(method="none", error=None):
    return {"method": method, "type": None, "usage": None, "uuid": None, "label": None, "partition_table": None,
            "error": error}


def _open(name, dev):
    """/dev/NAME read-only and O_DIRECT, checked to be the block device ``dev`` (``MAJOR:MINOR``) sysfs names."""
    path = "/dev/" + name
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC | os.O_NONBLOCK)
    st = os.fstat(fd)
    if not stat.S_ISBLK(st.st_mode) or f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" != dev:
        os.close(fd)
        raise OSError(f"{path} is not the block device {dev}")
    return fd


def probe(facts, method, blkid):
    """The ``content`` of a device (``facts`` from blkfleet.device.sysfs): ``method`` (blkid, internal or none),
    blkid's ``type``, ``usage``, ``uuid``, ``label`` and ``partition_table``, or the ``error`` that stopped it.
    ``blkid``: the program, for the blkid method."""
    if method == "none":
        return empty()
    try:
        fd = _open(facts["name"], facts["dev"])
    except OSError as e:
        return empty(error=f"cannot open {facts['path']}: {e.strerror or e}")
    try:
        if method == "blkid":
            tags, ambivalent = signatures.blkid_tags(fd, blkid)
            if ambivalent:
                return empty(error="blkid -p: several signatures (ambivalent result)")
            tags = tags or {}
            return {"method": "blkid", "type": tags.get("TYPE"), "usage": tags.get("USAGE"),
                    "uuid": tags.get("UUID"), "label": tags.get("LABEL"), "partition_table": tags.get("PTTYPE"),
                    "error": None}
        size = os.lseek(fd, 0, os.SEEK_END)
        found, _reads = signatures.identify(fd, size, facts["logical_block_size"] or 512)
        out = empty("internal")
        if found:
            _what, kind, usage = found
            out.update(partition_table=kind) if usage == signatures.TABLE else out.update(type=kind, usage=usage)
        return out
    except (OSError, BlkfleetError) as e:
        return empty(error=f"{method} probe of {facts['path']} failed: {getattr(e, 'strerror', None) or e}")
    finally:
        os.close(fd)


def method_for(wanted):
    """(method, blkid program) for ``--probe``: auto takes blkid when installed, else internal."""
    if wanted not in PROBES:
        raise BlkfleetError(f"invalid probe {wanted!r} ({', '.join(PROBES)})")
    if wanted in ("internal", "none"):
        return wanted, None
    blkid = signatures.blkid_path()
    if blkid:
        return "blkid", blkid
    if wanted == "blkid":
        raise BlkfleetError(f"--probe blkid: blkid (util-linux) is not installed in {signatures.BLKID_DIRS}",
                            code="unavailable")
    return "internal", None
