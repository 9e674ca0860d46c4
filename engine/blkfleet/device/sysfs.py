"""A block device as sysfs describes it: size, block sizes, queue, partitions, holders, loop backing.

Whole devices are the entries of ``/sys/block``; every device, partitions included, has
``/sys/class/block/NAME`` (a link into ``/sys/devices``). A partition shares its disk's ``queue/``.
"""

import os

SECTOR = 512
CLASS = "/sys/class/block"
WHOLE = "/sys/block"
# kernel name prefix -> device type, first match (a partition is "partition", anything else "disk")
TYPES = (("loop", "loop"), ("dm-", "dm"), ("md", "md"), ("nvme", "nvme"), ("zram", "zram"), ("nbd", "nbd"),
         ("sr", "rom"), ("ram", "ram"))


def read_text(path, default=None):
    """The stripped content of a small sysfs or procfs file, or ``default`` if it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return default


def read_int(path, default=None):
    text = read_text(path)
    try:
        return default if text is None else int(text, 0) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return default


def read_bool(path):
    value = read_int(path)
    return None if value is None else value != 0


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def parse_cpu_list(text):
    """The kernel's CPU list format (``0-3,6,8-9``) as a sorted list of ints."""
    cpus = set()
    for part in (text or "").strip().split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.update(range(int(lo), int(hi) + 1))
        elif part:
            cpus.add(int(part))
    return sorted(cpus)


def parse_scheduler(text):
    """``mq-deadline kyber [bfq] none`` -> (``bfq``, all four); (None, []) without the file."""
    active, available = None, []
    for word in (text or "").split():
        if word.startswith("[") and word.endswith("]"):
            word = active = word[1:-1]
        available.append(word)
    return active, available


def resolve(spec):
    """The kernel name (``sda``, ``loop3``, ``nvme0n1p1``) of a device given by name or by a path (links such as
    ``/dev/disk/by-id/...`` and ``/dev/mapper/...`` resolved, a node under another name matched by its device
    number; a name that is no kernel name is one under /dev, as in a replay's device map), or None when there is
    no such block device."""
    spec = spec.strip()
    if not spec or spec in (".", ".."):
        return None
    if "/" not in spec:
        if os.path.isdir(os.path.join(CLASS, spec)):
            return spec
        spec = os.path.join("/dev", spec)
    real = os.path.realpath(spec)
    if os.path.isdir(os.path.join(CLASS, os.path.basename(real))):
        return os.path.basename(real)
    try:
        rdev = os.stat(real).st_rdev
    except OSError:
        return None
    sysdir = f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}"
    return os.path.basename(os.path.realpath(sysdir)) if rdev and os.path.isdir(sysdir) else None


def whole_devices():
    return listdir(WHOLE)


def is_partition(name):
    return os.path.exists(os.path.join(CLASS, name, "partition"))


def parent_of(name):
    """The whole disk a partition belongs to, or None for a whole disk."""
    if not is_partition(name):
        return None
    return os.path.basename(os.path.dirname(os.path.realpath(os.path.join(CLASS, name))))


def partitions_of(name):
    base = os.path.join(CLASS, name)
    return [e for e in listdir(base) if e.startswith(name) and os.path.exists(os.path.join(base, e, "partition"))]


def device_type(name):
    if is_partition(name):
        return "partition"
    return next((kind for prefix, kind in TYPES if name.startswith(prefix)), "disk")


def loop_info(name):
    base = os.path.join(CLASS, name, "loop")
    if not os.path.isdir(base):
        return None
    return {"backing_file": read_text(os.path.join(base, "backing_file")),
            "offset": read_int(os.path.join(base, "offset")),
            "sizelimit": read_int(os.path.join(base, "sizelimit")),
            "autoclear": read_bool(os.path.join(base, "autoclear")),
            "direct_io": read_bool(os.path.join(base, "dio")),
            "read_only": read_bool(os.path.join(CLASS, name, "ro"))}


def facts(name):
    """What sysfs says of one device (mounts, swap, use and content are added by blkfleet.device.info)."""
    sysdir = os.path.join(CLASS, name)
    parent = parent_of(name)
    queue = os.path.join(CLASS, parent or name, "queue")
    sectors = read_int(os.path.join(sysdir, "size"), 0)
    active, available = parse_scheduler(read_text(os.path.join(queue, "scheduler")))
    zoned = read_text(os.path.join(queue, "zoned"))
    q = {key: read_int(os.path.join(queue, key)) for key in (
        "logical_block_size", "physical_block_size", "minimum_io_size", "optimal_io_size", "max_sectors_kb",
        "nr_requests")}
    return {
        "name": name, "path": "/dev/" + name, "dev": read_text(os.path.join(sysdir, "dev")),
        "type": device_type(name), "parent": parent, "size_bytes": sectors * SECTOR, "size_sectors": sectors,
        **q,
        "rotational": read_bool(os.path.join(queue, "rotational")), "scheduler": active, "schedulers": available,
        "discard": (read_int(os.path.join(queue, "discard_max_bytes"), 0) or 0) > 0, "zoned": zoned or None,
        "read_only": bool(read_bool(os.path.join(sysdir, "ro"))),
        "removable": read_bool(os.path.join(sysdir, "removable")),
        "model": read_text(os.path.join(sysdir, "device", "model")),
        "partitions": partitions_of(name), "holders": listdir(os.path.join(sysdir, "holders")),
        "slaves": listdir(os.path.join(sysdir, "slaves")),
        "trace_enable": os.path.exists(os.path.join(CLASS, parent or name, "trace", "enable")),
        "loop": loop_info(name),
    }
