"""Files and directories as root: trusted directories, new files that never follow links, atomic writes and
bounded JSON reads.

blkfleet runs as root, often in directories a user named. A directory is *trusted* when nobody but root (or
the user running blkfleet) can change what it holds: it and every directory above it are owned by root or by
us and are not writable by others (a world-writable directory counts only with the sticky bit, as /tmp and
/var/tmp have it, and only above the one we use). Files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a
link or file placed in advance makes the creation fail instead of redirecting it.
"""

import errno
import json
import os
import signal
import stat

from .errors import BlkfleetError

JSON_MAX_BYTES = 64 << 20
_NEW = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_STOPS = (signal.SIGINT, signal.SIGTERM)  # signals whose Python handlers may raise


def absolute(path):
    """``path`` made absolute from the current directory (trailing slashes dropped), its ``..`` left in place: the
    kernel takes a ``..`` after a symbolic link from where the link points, not by text as os.path.abspath does, so
    what is checked and what is used must both be resolved the kernel's way (the walks here follow links, then go
    up)."""
    path = os.fspath(path)
    path = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    return path.rstrip("/") or "/"


def _owner_ok(st):
    return st.st_uid in (0, os.geteuid())


def _writable_by_others(st, sticky_counts=True):
    """Whether someone else than the owner may add, remove or rename entries (sticky: only their own, which counts
    unless ``sticky_counts`` is false)."""
    sticky = sticky_counts and st.st_mode & stat.S_ISVTX
    if st.st_mode & stat.S_IWOTH and not sticky:
        return True
    return bool(st.st_mode & stat.S_IWGRP) and st.st_gid not in (0, os.getegid()) and not sticky


def _foreign_link(path):
    """The first symbolic link on the way to the absolute ``path`` that is neither root's nor ours, as
    ``(link, uid)``, or None; links are followed as the kernel would, a missing part ends the walk."""
    names = path.split("/")[1:]
    current, hops = "/", 0
    while names:
        name = names.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        here = os.path.join(current, name)
        try:
            st = os.lstat(here)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if not _owner_ok(st):
                return here, st.st_uid
            if hops > 40:
                return None
            target = os.readlink(here)
            names = [n for n in target.split("/") if n] + names
            current = "/" if target.startswith("/") else current
            continue
        current = here
    return None


def _above_reason(path, writable):
    """Why a directory above the real ``path`` lets others change it (``writable``: the message, naming
    ``{parent}``), or None: each must be root's or ours, and writable by nobody else unless sticky."""
    parent = os.path.dirname(os.path.realpath(path))
    while True:
        try:
            pst = os.stat(parent)
        except OSError as e:
            return f"cannot inspect {parent}: {e.strerror}"
        if not _owner_ok(pst):
            return f"{parent} above it is owned by uid {pst.st_uid}"
        if _writable_by_others(pst):
            return writable.format(parent=parent) + f" (mode {stat.S_IMODE(pst.st_mode):04o})"
        if parent == "/":
            return None
        parent = os.path.dirname(parent)


def untrusted_reason(path):
    """Why the existing directory ``path`` cannot be trusted, or None. Symbolic links above it are followed
    when they are root's or ours (their own place must be trusted too); ``path`` itself must be a real
    directory."""
    path = absolute(path)
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"cannot inspect it: {e.strerror}"
    link = _foreign_link(os.path.dirname(path))
    if link:
        return f"the link {link[0]} above it is owned by uid {link[1]}"
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if not _owner_ok(st):
        return f"it is owned by uid {st.st_uid}, not by root"
    if st.st_mode & stat.S_IWOTH or st.st_mode & stat.S_IWGRP and st.st_gid not in (0, os.getegid()):
        return f"others can write to it (mode {stat.S_IMODE(st.st_mode):04o})"
    return _above_reason(path, "others can write to {parent} above it")


def untrusted_file_reason(path, st):
    """Why the file ``path``, opened and found to be ``st`` (its fstat), cannot be trusted, or None: it must be
    root's or ours and only its owner may write it, no link on the way to it may be another user's, and no
    directory above it may let others replace it (a sticky one may: only the file's owner could)."""
    path = absolute(path)
    link = _foreign_link(path)
    if link:
        return f"the link {link[0]} on the way to it is owned by uid {link[1]}"
    if not _owner_ok(st):
        return f"it is owned by uid {st.st_uid}, not by root"
    if st.st_mode & stat.S_IWOTH or st.st_mode & stat.S_IWGRP and st.st_gid not in (0, os.getegid()):
        return f"others can write to it (mode {stat.S_IMODE(st.st_mode):04o})"
    return _above_reason(path, "others can replace it in {parent}")


def refuse_untrusted_file(path, st, what):
    """Raise BlkfleetError (one line) when the opened file ``path`` (``st``: its fstat) is one others could change
    (``untrusted_file_reason``): for inputs whose content decides what a replay writes."""
    reason = untrusted_file_reason(path, st)
    if reason:
        raise BlkfleetError(f"{path}: refusing this {what}: {reason} (use a file only root can change)")


def trusted_dir(path, what="directory", mode=0o755, create=True):
    """The absolute path of a trusted directory, created (with its missing parents) when ``create``.

    Raises BlkfleetError (one line, exit 2) when it exists but others could change what it holds. A ``..`` in
    ``path`` is left to the kernel (``absolute``).
    """
    path = absolute(path)
    if create and not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent != path and not os.path.lexists(parent):
            trusted_dir(parent, what=f"{what}'s parent", mode=0o755)
        link = _foreign_link(parent)
        if link:
            raise BlkfleetError(f"{path}: refusing this {what}: the link {link[0]} above it is owned by uid "
                                f"{link[1]} (use a directory only root can write to)")
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass  # made meanwhile: checked below like any existing directory
        except OSError as e:
            raise BlkfleetError(f"{path}: cannot create the {what}: {e.strerror}") from None
    reason = untrusted_reason(path)
    if reason:
        raise BlkfleetError(f"{path}: refusing this {what}: {reason} (use a directory only root can write to)")
    return path


def work_dir(path, what="output directory", create=True, sticky_ok=False):
    """The real path of a directory for outputs a user named (results, replay files, reports), made with its
    missing parents when ``create``; BlkfleetError (exit 2) when anyone but root or us could change what it holds.

    The path is walked from / one name at a time: every directory on the way must be ours or root's and not
    writable by others (sticky ones such as /tmp count above it); a symbolic link on the way (results/ on a larger
    disk) is followed only when it is ours or root's, so that nobody else can point it elsewhere. Without
    ``create``, a missing directory is judged by the part of its path that exists. ``sticky_ok``: the directory
    itself may be a sticky one such as /tmp (for files created under new names and renamed into place).
    """
    names = absolute(path).split("/")[1:]
    current, hops = "/", 0
    while names:
        name = names.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        here = os.path.join(current, name)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            if not create:
                return os.path.join(here, *names)
            try:
                os.mkdir(here, 0o755)
            except FileExistsError:
                pass  # made meanwhile: checked below like any other
            except OSError as e:
                raise BlkfleetError(f"{here}: cannot create the {what}: {e.strerror}") from None
            st = os.lstat(here)
        except OSError as e:
            raise BlkfleetError(f"{here}: cannot inspect the {what}: {e.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if not _owner_ok(st) or hops > 40:
                why = "too many links" if hops > 40 else f"the link {here} is owned by uid {st.st_uid}"
                raise BlkfleetError(f"{path}: refusing this {what}: {why} (use a directory only root or you can "
                                    "write to)")
            target = os.readlink(here)
            names = [n for n in target.split("/") if n] + names
            current = "/" if target.startswith("/") else current
            continue
        if not stat.S_ISDIR(st.st_mode):
            reason = "it is not a directory" if not names else f"{here} is not a directory"
        elif not _owner_ok(st):
            reason = f"{here} is owned by uid {st.st_uid}"
        elif _writable_by_others(st, sticky_counts=bool(names) or sticky_ok):
            reason = f"others can write to {here} (mode {stat.S_IMODE(st.st_mode):04o})"
        else:
            reason = None
        if reason:
            raise BlkfleetError(f"{path}: refusing this {what}: {reason} (use a directory only root or you can "
                                "write to)")
        current = here
    return current


def private_dir(path, what="directory"):
    """A trusted directory that only its owner may enter (mode 0700), created if missing."""
    path = trusted_dir(path, what, mode=0o700)
    st = os.lstat(path)
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def create_new(path, mode=0o644, flags=os.O_WRONLY):
    """Open a file that must not exist yet (no link followed); returns the descriptor."""
    return os.open(path, flags | _NEW, mode)


def open_new(path, mode=0o644, binary=True):
    """``create_new`` as a Python file object."""
    return os.fdopen(create_new(path, mode), "wb" if binary else "w")


def open_append(path, mode=0o644):
    """A log file to append to: created if missing, never through a link, and refused unless a regular file."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BlkfleetError(f"{path}: not a regular file")
    return fd


class atomic_file:
    """A new file beside ``path`` that replaces it at the end of a ``with`` block that raised nothing: written,
    synced, then renamed over it (a link at ``path`` is replaced, never followed); its mode is ``mode``, whatever
    the umask. If the block raises, the new file is removed and ``path`` stays as it was. For content written
    piece by piece (a bundle, a replay file); ``atomic_write`` for bytes at hand. ``sync``: flush it to the disk
    before the rename (off for large outputs that can be made again, such as replay files).

    >>> with atomic_file("out.tar", 0o644) as f:
    ...     f.write(b"...")
    """

    def __init__(self, path, mode=0o644, sync=True):
        directory, base = os.path.split(absolute(path))
        self.path = path
        self.tmp = os.path.join(directory, f".{base}.{os.urandom(6).hex()}.tmp")
        self.mode = mode
        self.sync = sync
        self.file = None

    def __enter__(self):
        # A signal's exception (^C, or SIGTERM where a handler raises one) must not come between the file's
        # creation and this object owning it: __exit__ would not run to remove it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
        try:
            fd = create_new(self.tmp, self.mode)
        except OSError as e:  # named as the output the user gave, not the new file beside it
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise OSError(e.errno, e.strerror, str(self.path)) from None
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self.file = os.fdopen(fd, "wb")
            os.fchmod(fd, self.mode)
        except BaseException:
            os.unlink(self.tmp)
            try:  # (closed already if fdopen made a file object of it before the exception)
                os.close(fd) if self.file is None else self.file.close()
            except OSError:
                pass
            raise
        return self.file

    def __exit__(self, kind, value, tb):
        try:
            if kind is None:
                self.file.flush()
                if self.sync:
                    os.fsync(self.file.fileno())
            self.file.close()
            if kind is None:
                try:
                    os.replace(self.tmp, self.path)
                except OSError as e:
                    raise BlkfleetError(f"{self.path}: cannot put the new file in place: {e.strerror}") from None
                return
        except BaseException:
            self._discard()
            raise
        self._discard()

    def _discard(self):
        if not self.file.closed:
            self.file.close()
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def atomic_write(path, data, mode=0o644):
    """Replace ``path`` with ``data`` (bytes or str) at once (``atomic_file``). A failure leaves ``path`` as it
    was."""
    with atomic_file(path, mode) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def write_json_file(path, doc, mode=0o644):
    """``doc`` as indented JSON, written atomically."""
    atomic_write(path, json.dumps(doc, indent=1, sort_keys=True) + "\n", mode)


def open_file(path):
    """``open(path, "rb")`` for an input, refusing anything but a regular file with an OSError naming it; a FIFO is
    opened without waiting for a writer, so it is refused instead of hanging the reader."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
            raise OSError(code, os.strerror(code) if stat.S_ISDIR(mode) else "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def loads_json(data, where, what="JSON"):
    """Parse JSON text or bytes; any problem (encoding, syntax, nesting) is one BlkfleetError naming ``where``."""
    try:
        if isinstance(data, (bytes, bytearray)):
            data = bytes(data).decode("utf-8")
        return json.loads(data)
    except UnicodeDecodeError as e:
        raise BlkfleetError(f"{where}: {what} is not UTF-8 text (byte {e.start})") from None
    except RecursionError:
        raise BlkfleetError(f"{where}: {what} is nested too deeply") from None
    except ValueError as e:
        raise BlkfleetError(f"{where}: {what} is not valid JSON: {e}") from None


def read_json(path, what="JSON", max_bytes=JSON_MAX_BYTES, nofollow=False, trusted=False):
    """Read and parse a JSON file of at most ``max_bytes``; one-line BlkfleetError on any problem.
    ``nofollow``: refuse a symbolic link (files in directories blkfleet keeps); ``trusted``: refuse a file others
    could change (``refuse_untrusted_file``)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise BlkfleetError(f"{path}: cannot read {what}: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BlkfleetError(f"{path}: {what} is not a regular file")
    if trusted:
        try:
            refuse_untrusted_file(path, st, what)
        except BlkfleetError:
            os.close(fd)
            raise
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BlkfleetError(f"{path}: {what} is larger than {max_bytes} bytes")
    return loads_json(data, path, what)
