"""Replay targets: the device map, opening devices, and the safety checks made before any IO."""

import fcntl
import os
import stat
import struct

from ..errors import BlkfleetError

BLKGETSIZE64 = 0x80081272
BLKSSZGET = 0x1268
BLKROGET = 0x125E
BLKDISCARD = 0x1277
BLKZEROOUT = 0x127F

# (offset, magic, what): on-disk signatures that mean "this device holds data worth keeping"
SIGNATURES = (
    (1080, b"\x53\xef", "an ext2/3/4 filesystem"),
    (0, b"XFSB", "an XFS filesystem"),
    (65600, b"_BHRfS_M", "a btrfs filesystem"),
    (3, b"NTFS    ", "an NTFS filesystem"),
    (54, b"FAT", "a FAT filesystem"),
    (82, b"FAT32", "a FAT32 filesystem"),
    (4086, b"SWAPSPACE2", "swap space"),
    (536, b"LVM2 001", "an LVM physical volume"),
    (4096, b"\xa9\x2b\x4d\xfc", "a LUKS volume"),
    (0, b"LUKS\xba\xbe", "a LUKS volume"),
    (512, b"EFI PART", "a GPT partition table"),
    (510, b"\x55\xaa", "an MBR partition table or boot sector"),
)


def parse_map(path):
    """btreplay's map file: ``FROM TO`` pairs (whitespace separated, ``#`` comments), first match wins."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise BlkfleetError(f"{path}: cannot read device map: {e.strerror}") from None
    mapping = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            raise BlkfleetError(f"{path}:{number}: expected 'FROM TO', got {line.strip()!r}")
        mapping.setdefault(words[0], words[1])
    return mapping


def device_path(name):
    """``/dev/NAME`` for a name as recorded or mapped (``_`` read as ``/`` if only that exists), or a path."""
    if name.startswith("/"):
        return name
    path = os.path.join("/dev", name)
    if not os.path.exists(path) and "_" in name and os.path.exists(os.path.join("/dev", name.replace("_", "/"))):
        return os.path.join("/dev", name.replace("_", "/"))
    return path


class Target:
    """A block device about to be replayed onto: its geometry and what it holds."""

    def __init__(self, recorded, path):
        self.recorded = recorded
        self.path = path
        try:
            st = os.stat(path)
        except OSError as e:
            raise BlkfleetError(f"{path}: {e.strerror} (target of recorded device {recorded})") from None
        if not stat.S_ISBLK(st.st_mode):
            raise BlkfleetError(f"{path}: not a block device (target of recorded device {recorded})")
        self.rdev = st.st_rdev
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.size = _ioctl_u64(fd, BLKGETSIZE64)
            self.block_size = _ioctl_int(fd, BLKSSZGET)
            self.read_only = bool(_ioctl_int(fd, BLKROGET))
        finally:
            os.close(fd)
        self.mounts = _mounts_of(self.rdev)
        self.holders = _holders_of(self.rdev)
        self.queue_depth = _nr_requests(self.rdev)

    def refuse_writes_reason(self):
        """Why writing here would destroy something, or None."""
        if self.mounts:
            return f"it is mounted on {', '.join(self.mounts)}"
        if self.holders:
            return f"it is in use by {', '.join(self.holders)}"
        signature = self.signature()
        if signature:
            return f"it holds {signature}"
        return None

    def signature(self):
        """What the first blocks hold (filesystem, partition table...), or None; reads the device."""
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return _probe(fd, self.size)
        finally:
            os.close(fd)

    def open(self, write):
        flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_DIRECT | os.O_CLOEXEC | getattr(os, "O_NOATIME", 0)
        try:
            return os.open(self.path, flags)
        except OSError as e:
            raise BlkfleetError(f"{self.path}: cannot open for {'writing' if write else 'reading'}: {e.strerror}") \
                from None


def _ioctl_u64(fd, request):
    return struct.unpack("Q", fcntl.ioctl(fd, request, b"\0" * 8))[0]


def _ioctl_int(fd, request):
    return struct.unpack("i", fcntl.ioctl(fd, request, b"\0" * 4))[0]


def _probe(fd, size):
    head = os.pread(fd, min(size, 65536 + 4096), 0)
    for offset, magic, what in SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return what
    return None


def _sys_block(rdev):
    return f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}"


def _dev_numbers(rdev):
    """The device and its partitions as 'major:minor' strings."""
    numbers = {f"{os.major(rdev)}:{os.minor(rdev)}"}
    base = os.path.realpath(_sys_block(rdev))
    try:
        for entry in os.listdir(base):
            dev_file = os.path.join(base, entry, "dev")
            if os.path.exists(os.path.join(base, entry, "partition")) and os.path.exists(dev_file):
                with open(dev_file) as f:
                    numbers.add(f.read().strip())
    except OSError:
        pass
    return numbers


def _mounts_of(rdev):
    numbers = _dev_numbers(rdev)
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[2] in numbers:
                    found.append(fields[4])
    except OSError:
        pass
    swaps = []
    try:
        with open("/proc/swaps") as f:
            swaps = [line.split()[0] for line in f.readlines()[1:]]
    except OSError:
        pass
    for path in swaps:
        try:
            rdev = os.stat(path).st_rdev
        except OSError:
            continue
        if rdev and f"{os.major(rdev)}:{os.minor(rdev)}" in numbers:
            found.append(f"swap {path}")
    return found


def _nr_requests(rdev):
    """The device's request queue size (a partition's is its disk's), or None."""
    base = os.path.realpath(_sys_block(rdev))
    for path in (os.path.join(base, "queue", "nr_requests"), os.path.join(base, "..", "queue", "nr_requests")):
        try:
            with open(path) as f:
                return int(f.read())
        except (OSError, ValueError):
            continue
    return None


def _holders_of(rdev):
    try:
        return sorted(os.listdir(os.path.join(_sys_block(rdev), "holders")))
    except OSError:
        return []


def discard(fd, offset, nbytes):
    fcntl.ioctl(fd, BLKDISCARD, struct.pack("QQ", offset, nbytes))


def zero_out(fd, offset, nbytes):
    fcntl.ioctl(fd, BLKZEROOUT, struct.pack("QQ", offset, nbytes))
