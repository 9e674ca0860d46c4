"""Replay targets: the device map, opening devices, and the safety checks made before any IO."""

import copy
import datetime
import errno
import fcntl
import json
import os
import stat
import struct

from ..device import mounts
from ..errors import BlkfleetError
from ..files import private_dir, untrusted_file_reason
from ..names import check_name, name_problem
from . import signatures

BLKGETSIZE64 = 0x80081272
BLKSSZGET = 0x1268
BLKROGET = 0x125E
BLKDISCARD = 0x1277
BLKZEROOUT = 0x127F
PATH_MAX = 4096
LOCK_ROOT = "/run/blkfleet/locks"

MAP_MAX_BYTES = 1 << 20


def parse_map(path):
    """btreplay's map file: ``FROM TO`` pairs (whitespace separated, ``#`` comments), first match wins. FROM is
    a recorded device name, TO a device name under /dev or the absolute path of a block device; both checked
    here, before either becomes a path."""
    try:  # O_NONBLOCK: a FIFO must not hang the open; it is refused below
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise BlkfleetError(f"{path}: cannot read device map: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BlkfleetError(f"{path}: device map is not a regular file")
    reason = untrusted_file_reason(path, st)  # it decides which devices -W writes
    if reason:
        os.close(fd)
        raise BlkfleetError(f"{path}: refusing this device map: {reason} (use a file only root can change)")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAP_MAX_BYTES + 1)
    if len(data) > MAP_MAX_BYTES:
        raise BlkfleetError(f"{path}: device map is larger than {MAP_MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BlkfleetError(f"{path}: device map is not UTF-8 text (byte {e.start})") from None
    mapping = {}
    for number, line in enumerate(text.split("\n"), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            raise BlkfleetError(f"{path}:{number}: expected 'FROM TO', got {line.strip()!r}")
        problem = name_problem(words[0])
        if problem:
            raise BlkfleetError(f"{path}:{number}: invalid recorded device name {words[0]!r}: {problem}")
        problem = target_problem(words[1])
        if problem:
            raise BlkfleetError(f"{path}:{number}: invalid target {words[1]!r}: {problem}")
        mapping.setdefault(words[0], words[1])
    return mapping


def target_problem(target):
    """Why a map's TO cannot be a target, or None: a device name (blkfleet.names) or an absolute path."""
    if target.startswith("/"):
        if len(target) > PATH_MAX or any(ord(c) < 32 or c == "\x7f" for c in target):
            return f"an absolute path of at most {PATH_MAX} characters, without control characters"
        return None
    return name_problem(target)


def device_path(name):
    """``/dev/NAME`` for a device name as recorded or mapped (``_`` read as ``/`` if only that exists), or the
    absolute path given. The name is checked first (no '/', no '.' or '..' between '_'), so the path stays
    under /dev; whatever it names must still be a block device (``Target``)."""
    if name.startswith("/"):
        return name
    check_name(name, "device name")
    path = os.path.join("/dev", name)
    if not os.path.exists(path) and "_" in name and os.path.exists(os.path.join("/dev", name.replace("_", "/"))):
        return os.path.join("/dev", name.replace("_", "/"))
    return path


class Target:
    """A block device about to be replayed onto, opened once (``fd``: O_DIRECT; read-write and O_EXCL with
    ``write``, so the kernel itself refuses a mounted or claimed device, and a second writer), checked through
    that descriptor (fstat: a block device, the very device number checked before it was opened), and used as
    it is by every worker: nothing reopens its path. With ``write``, an advisory lock per device
    (``DeviceLock``) makes a second writing replay fail at once, naming the first."""

    def __init__(self, recorded, path, write=False, run_id=None):
        self.recorded = recorded
        self.path = path
        self.fd = self.shared_fd = None
        self.lock = None
        self.probe = None
        what = f"target of recorded device {recorded}"
        try:
            st = os.stat(path)
        except (OSError, ValueError) as e:
            raise BlkfleetError(f"{path}: {getattr(e, 'strerror', None) or e} ({what})",
                                code="not_found" if getattr(e, "errno", None) == errno.ENOENT else None) from None
        if not stat.S_ISBLK(st.st_mode):
            raise BlkfleetError(f"{path}: not a block device ({what})")
        self.rdev = st.st_rdev
        try:
            if write:
                self.lock = DeviceLock(self.rdev, path, run_id)
            self.fd = self._open(write)
            fst = os.fstat(self.fd)
            if not stat.S_ISBLK(fst.st_mode) or fst.st_rdev != self.rdev:
                raise BlkfleetError(f"{path}: changed while it was being opened ({what})")
            fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            self.size = _ioctl_u64(self.fd, BLKGETSIZE64)
            self.block_size = _ioctl_int(self.fd, BLKSSZGET)
            self.read_only = bool(_ioctl_int(self.fd, BLKROGET))
        except BaseException:
            self.close()
            raise
        self.mounts = _mounts_of(self.rdev)
        self.holders = _holders_of(self.rdev)
        self.queue_depth = _nr_requests(self.rdev)

    def _open(self, write):
        """The path opened, O_NONBLOCK until fstat has checked it: a FIFO swapped in after the stat must not hang
        the open."""
        flags = os.O_DIRECT | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOATIME", 0)
        flags |= os.O_RDWR | os.O_EXCL if write else os.O_RDONLY
        try:
            return os.open(self.path, flags)
        except OSError as e:
            if write and e.errno == errno.EBUSY:
                users = _mounts_of(self.rdev) + _holders_of(self.rdev)
                raise BlkfleetError(
                    f"{self.path}: refusing to write: the kernel refuses an exclusive open (it is "
                    f"{'in use by ' + ', '.join(users) if users else 'mounted, claimed or open exclusively elsewhere'}"
                    "; never written, even with --force)", code="target_refused") from None
            raise BlkfleetError(f"{self.path}: cannot open for {'writing' if write else 'reading'}: {e.strerror}") \
                from None

    def alias(self, recorded, path):
        """This open device as the target of one more recorded device (several recorded devices mapped onto
        one target share its descriptor and lock; only the first closes them)."""
        other = copy.copy(self)
        other.recorded, other.path, other.probe = recorded, path, None
        other.fd = other.lock = None
        other.shared_fd = self.fd
        return other

    @property
    def descriptor(self):
        return self.fd if self.fd is not None else self.shared_fd

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def refuse_writes_reason(self, method="auto"):
        """Why writing here would destroy something, or None."""
        if self.mounts:
            return f"it is mounted on {', '.join(self.mounts)}"
        if self.holders:
            return f"it is in use by {', '.join(self.holders)}"
        signature = self.signature(method)
        if signature:
            return f"it holds {signature}"
        return None

    def signature(self, method="auto"):
        """What the device holds (filesystem, partition table...), or None; the probe made is kept in
        ``probe`` for the results."""
        self.probe = signatures.probe(self.descriptor, self.size, self.block_size, method)
        return self.probe["found"]


class DeviceLock:
    """An advisory lock (flock) per block device for replays that write to it: ``LOCK_ROOT/MAJ:MIN.lock``,
    root's alone, holding the holder's pid, start time and run ID as JSON so that the second writer can name
    it. Workers inherit it: it lasts as long as any process of the replay."""

    def __init__(self, rdev, path, run_id=None):
        directory = private_dir(LOCK_ROOT, "lock directory")
        self.path = os.path.join(directory, f"{os.major(rdev)}:{os.minor(rdev)}.lock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise BlkfleetError(f"{self.path}: cannot open the device lock: {e.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BlkfleetError(f"{self.path}: the device lock is not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BlkfleetError(f"{path}: another replay writes to it ({_holder(fd)})",
                                    code="target_refused") from None
            started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
            holder = {"pid": os.getpid(), "started": started, "run_id": run_id, "device": path}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None


def _holder(fd):
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        text = f"pid {int(holder['pid'])}, started {holder['started']}"
        return text + (f", run {holder['run_id']}" if holder.get("run_id") else "")
    except (OSError, ValueError, TypeError, KeyError, OverflowError):
        return "a replay whose pid is not known yet"


def _ioctl_u64(fd, request):
    return struct.unpack("Q", fcntl.ioctl(fd, request, b"\0" * 8))[0]


def _ioctl_int(fd, request):
    return struct.unpack("i", fcntl.ioctl(fd, request, b"\0" * 4))[0]


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
    return mounts.users(_dev_numbers(rdev))


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
