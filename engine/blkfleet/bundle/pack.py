"""Bundle files: create, read the manifest, verify, extract.

A bundle is an uncompressed POSIX tar (pax format; plain ustar headers unless a field overflows) of regular
files only: ``manifest.json`` first, then ``engine.pyz``, then ``replay/DEV.BASE.CPU`` in device then CPU
order. Every header is fixed (mtime 0, uid/gid 0, no owner names, mode 0644, 0755 for engine.pyz), so the same
inputs always give the same bytes. The manifest comes first so that ``info`` reads one header and one member,
and so that ``verify``/``extract`` know each member's size and sha256 before reading it: a member is refused as
soon as its name, type or size differs from the manifest, and nothing is written outside the target directory.

What a bundle can make ``extract`` write is bounded before anything is written: exactly the sizes the manifest
lists (a sparse member, whose extracted size is not its size in the archive, is refused), whose replay files
hold at most MAX_REPLAY_BYTES (64 GiB) together, engine.pyz at most 64 MiB, and only when the destination's
file system has that much room.
"""

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile

from ..errors import BlkfleetError
from ..files import atomic_file, loads_json, open_file, read_json, trusted_dir
from . import manifest as mf
from .zipapp import engine_bytes

MAX_MANIFEST = 16 << 20
CHUNK = 1 << 20
REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
KINDS = {
    tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link", tarfile.DIRTYPE: "a directory",
    tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a FIFO",
    tarfile.GNUTYPE_SPARSE: "a sparse file", tarfile.CONTTYPE: "a contiguous file",
}


# -- create ---------------------------------------------------------------------------------------------------

def engine_entry(data):
    from .. import __version__

    return {
        "path": mf.ENGINE, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "version": __version__,
        "requires_python": mf.REQUIRES_PYTHON,
    }


def _tarinfo(name, size, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class _HashingReader:
    """Reads a file for tarfile while hashing it, to catch a replay file that changed since it was described."""

    def __init__(self, f):
        self._f = f
        self.digest = hashlib.sha256()

    def read(self, n=-1):
        data = self._f.read(n)
        self.digest.update(data)
        return data


def create(out, replay_dir, devices=(), find=False, base="replay", trace_dir=None, source_host=None,
           record_json=None, engine=None):
    """Write a bundle to ``out`` (atomically); return its manifest.

    ``engine`` is the engine.pyz bytes to include (default: built from the running blkfleet package). The replay
    files' directory and ``trace_dir`` must be ones nobody but root (or us) can change (``files.trusted_dir``), as
    ``record``'s: the hosts replay the files with -W, and the manifest holds what capture.json says of the devices;
    another user who could swap them, or a link on the way, would choose what is packed under the bundle's id.
    """
    for directory, what in ((replay_dir, "input directory"), (trace_dir, "trace directory")):
        if directory is not None:
            trusted_dir(directory, what, create=False)
    data = engine_bytes() if engine is None else engine
    manifest, members = mf.build(
        replay_dir, devices, find, base, trace_dir, source_host, record_json, engine_entry(data)
    )
    expected = {e["path"]: e for e in manifest["files"]}
    head = mf.encode(manifest)
    with atomic_file(out, 0o644) as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tarinfo(mf.MANIFEST, len(head)), _bytes_reader(head))
        tar.addfile(_tarinfo(mf.ENGINE, len(data), 0o755), _bytes_reader(data))
        for name, path in members:
            entry = expected[name]
            with open(path, "rb") as src:
                reader = _HashingReader(src)
                try:
                    tar.addfile(_tarinfo(name, entry["size"]), reader)
                except OSError as e:
                    raise BlkfleetError(f"{path}: changed while bundling ({e})") from None
                if reader.digest.hexdigest() != entry["sha256"] or src.read(1):
                    raise BlkfleetError(f"{path}: changed while bundling (its sha256 or size differs)")
    return manifest


def _bytes_reader(data):
    import io

    return io.BytesIO(data)


# -- read -----------------------------------------------------------------------------------------------------

class Bundle:
    """An open bundle: ``manifest`` is read and checked (schema, version, id) on opening."""

    def __init__(self, path):
        self.path = str(path)
        try:
            self._f = open_file(self.path)
        except OSError as e:
            raise BlkfleetError(f"{self.path}: cannot open bundle: {e.strerror}") from None
        try:
            self._tar = self._open_tar()
            self.manifest = self._read_manifest()
        except BaseException:
            self._f.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._tar.close()
        self._f.close()

    def _fail(self, problem):
        return BlkfleetError(f"{self.path}: {problem}")

    def _open_tar(self):
        if os.fstat(self._f.fileno()).st_size == 0:
            raise self._fail("not a blkfleet bundle (empty file)")
        try:
            return tarfile.open(fileobj=self._f, mode="r:")
        except tarfile.TarError as e:
            raise self._fail(f"not a blkfleet bundle (not an uncompressed tar archive: {e})") from None

    def _next(self):
        try:
            return self._tar.next()
        except (tarfile.TarError, EOFError) as e:
            raise self._fail(f"truncated or corrupt bundle after offset {self._tar.offset} ({e})") from None

    def _read_manifest(self):
        member = self._next()
        if member is None:
            raise self._fail("not a blkfleet bundle (no manifest.json: the archive is empty)")
        if member.name != mf.MANIFEST:
            raise self._fail(f"not a blkfleet bundle (no manifest.json first; first member is {member.name!r})")
        self._check_type(member)
        if member.size > MAX_MANIFEST:
            raise self._fail(f"manifest.json is too large ({member.size} bytes, at most {MAX_MANIFEST})")
        raw = self._read_member(member, member.size)
        manifest = loads_json(raw, self.path, mf.MANIFEST)
        return mf.check(manifest, f"{self.path}: manifest.json")

    def _check_type(self, member):
        if member.type not in REGULAR:
            kind = KINDS.get(member.type, f"of tar type {member.type!r}")
            raise self._fail(f"member {member.name!r} is {kind}: only regular files are allowed")
        if member.sparse is not None or any(k.startswith("GNU.sparse") for k in member.pax_headers):
            raise self._fail(f"member {member.name!r} is a sparse file (its extracted size is not its size in the "
                             "bundle): refused")

    def _chunks(self, member, size):
        """Yield the member's data in chunks, ``size`` bytes in all, or fail as truncated."""
        try:
            src = self._tar.extractfile(member)
            left = size
            while left:
                chunk = src.read(min(CHUNK, left))
                if not chunk:
                    raise EOFError(f"{size - left} of {size} bytes")
                left -= len(chunk)
                yield chunk
        except (tarfile.TarError, EOFError, OSError) as e:
            raise self._fail(f"member {member.name!r} is truncated ({e})") from None

    def _read_member(self, member, size):
        return b"".join(self._chunks(member, size))

    def members(self, sink=None):
        """Check every member after the manifest against it; ``sink(name)`` gives a file to copy each into."""
        expected = {e["path"]: e for e in self.manifest["files"]}
        expected[mf.ENGINE] = self.manifest["engine"]
        seen = set()
        while True:
            member = self._next()
            if member is None:
                break
            name = member.name
            _check_name(self, name)
            if name in seen or name == mf.MANIFEST:
                raise self._fail(f"member {name!r} appears twice")
            if name not in expected:
                raise self._fail(f"member {name!r} is not listed in the manifest")
            self._check_type(member)
            entry = expected[name]
            if member.size != entry["size"]:
                raise self._fail(f"member {name!r} holds {member.size} bytes, the manifest says {entry['size']}")
            digest = hashlib.sha256()
            out = sink(name) if sink else None
            try:
                for chunk in self._chunks(member, member.size):
                    digest.update(chunk)
                    if out:
                        out.write(chunk)
            finally:
                if out:
                    out.close()
            if digest.hexdigest() != entry["sha256"]:
                raise self._fail(f"member {name!r}: sha256 mismatch (content differs from the manifest)")
            seen.add(name)
        missing = sorted(set(expected) - seen)
        if missing:
            raise self._fail(f"member {missing[0]!r} is missing ({len(missing)} missing: bundle truncated?)")
        self._check_end()
        return self.manifest

    def _check_end(self):
        """After the last member: the end-of-archive marker (two zero blocks), not garbage or end of file."""
        end = self._tar.offset
        self._f.seek(end)
        tail = self._f.read(2 * tarfile.BLOCKSIZE)
        if len(tail) < 2 * tarfile.BLOCKSIZE:
            raise self._fail(f"truncated bundle: no end-of-archive marker at offset {end}")
        if tail.strip(b"\0"):
            raise self._fail(f"corrupt bundle: unreadable data at offset {end}, after the last member")


def _check_name(bundle, name):
    bad = (
        not name or name.startswith("/") or "\\" in name or "\0" in name
        or any(part in ("", ".", "..") for part in name.split("/"))
    )
    if bad:
        raise bundle._fail(f"member {name!r} has an unsafe path (absolute, '..' or empty parts): refused")


def read_manifest(path):
    """The checked manifest of a bundle, without reading the other members."""
    with Bundle(path) as b:
        return b.manifest


def verify(path):
    """Check a bundle completely (manifest, every member's type, size and sha256); return the manifest."""
    with Bundle(path) as b:
        return b.members()


def extract(path, dest):
    """Verify and extract a bundle into ``dest`` (new, empty, or holding the same bundle); return the manifest.

    Members go to a temporary directory inside ``dest`` first and are moved into place only once all of them
    have been checked, ``manifest.json`` last: a failed extraction leaves nothing behind.
    """
    with Bundle(path) as b:
        dest = _check_dest(dest, b.manifest)
        _check_room(dest, b.manifest)
        tmp = tempfile.mkdtemp(prefix=".bundle-", dir=dest)
        try:
            os.mkdir(os.path.join(tmp, mf.REPLAY_DIR))
            b.members(lambda name: _create(os.path.join(tmp, *name.split("/")), name))
            with _create(os.path.join(tmp, mf.MANIFEST), mf.MANIFEST) as f:
                f.write(mf.encode(b.manifest))
            replay_dir = os.path.join(dest, mf.REPLAY_DIR)
            if os.path.islink(replay_dir) or (os.path.lexists(replay_dir) and not os.path.isdir(replay_dir)):
                raise BlkfleetError(f"{replay_dir}: exists and is not a directory")
            os.makedirs(replay_dir, exist_ok=True)
            for entry in b.manifest["files"]:
                os.replace(os.path.join(tmp, *entry["path"].split("/")), os.path.join(dest, *entry["path"].split("/")))
            os.replace(os.path.join(tmp, mf.ENGINE), os.path.join(dest, mf.ENGINE))
            os.replace(os.path.join(tmp, mf.MANIFEST), os.path.join(dest, mf.MANIFEST))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return b.manifest


def _create(path, name):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 0o755 if name == mf.ENGINE else 0o644)
    return os.fdopen(fd, "wb")


def extracted_bytes(manifest):
    """What extracting a bundle writes: its replay files, engine.pyz and manifest.json, in bytes."""
    return manifest["totals"]["size"] + manifest["engine"]["size"] + len(mf.encode(manifest))


def _check_room(dest, manifest):
    """Refuse before writing when the destination's file system cannot hold the extracted bundle."""
    need = extracted_bytes(manifest)
    st = os.statvfs(dest)
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise BlkfleetError(f"{dest}: the bundle needs {need} bytes, the file system has {free} free")


def _check_dest(dest, manifest):
    """``dest`` must be new, empty, or an earlier extraction of this same bundle holding nothing else: a file
    the manifest does not list (say an extra ``replay/sda.replay.9`` full of writes, which ``replay`` would pick
    up) is refused, never deleted. It must be a trusted directory (see blkfleet.files). Returns its absolute
    path."""
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise BlkfleetError(f"{dest}: exists and is not a directory")
    dest = trusted_dir(dest, "extraction directory")
    entries = [n for n in os.listdir(dest) if not n.startswith(".bundle-")]
    if not entries:
        return dest
    path = os.path.join(dest, mf.MANIFEST)
    try:
        same = read_json(path, "manifest", max_bytes=MAX_MANIFEST, nofollow=True).get("bundle_id") == manifest[
            "bundle_id"]
    except (BlkfleetError, AttributeError):
        same = False
    if not same:
        raise BlkfleetError(f"{dest}: not empty and not an extraction of this bundle (extract into a new directory)")
    listed = {mf.MANIFEST, mf.ENGINE, mf.REPLAY_DIR} | {e["path"] for e in manifest["files"]}
    replay_dir = os.path.join(dest, mf.REPLAY_DIR)
    found = set(entries)
    if stat.S_ISDIR(os.lstat(replay_dir).st_mode if os.path.lexists(replay_dir) else 0):
        found |= {f"{mf.REPLAY_DIR}/{n}" for n in os.listdir(replay_dir)}
    extra = sorted(found - listed)
    if extra:
        raise BlkfleetError(f"{dest}: holds {extra[0]!r}, which bundle {manifest['bundle_id'][:12]} does not list "
                            f"({len(extra)} such entries): refused (extract into a new directory, or remove them)")
    return dest
