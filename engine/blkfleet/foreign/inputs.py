"""Input files of an import: plain, compressed (gzip, xz, bzip2; zstandard when the ``zstandard`` module is
importable) or tar archives of such files (Tencent's traces come as ``.tgz``), read as blocks of whole lines.

The compression is told by the file's first bytes, not its name. A tar archive (``ustar`` at offset 257 of the
decompressed stream) is read as a stream, its regular members in archive order, each an input of its own,
named ``ARCHIVE:MEMBER``. Every problem is an InputError naming the input and the line where it was found.
"""

import bz2
import gzip
import lzma
import os
import tarfile
import zlib

from ..errors import BlkfleetError
from ..files import open_file, refuse_untrusted_file

BLOCK = 1 << 20
MAGICS = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"BZh", "bzip2"), (b"\x28\xb5\x2f\xfd", "zstandard"))
_CORRUPT = (OSError, EOFError, zlib.error, lzma.LZMAError, tarfile.TarError)


class InputError(BlkfleetError):
    """A problem in an input: ``NAME: line N: problem`` (line 0: before the first line, e.g. a bad archive)."""

    def __init__(self, name, line, problem):
        self.name, self.line, self.problem = str(name), line, problem
        where = f"{self.name}: line {line}: " if line else f"{self.name}: "
        super().__init__(where + problem, path=self.name, line=line)


def compression(head):
    """The compression named by a file's first bytes, or None."""
    return next((kind for magic, kind in MAGICS if head.startswith(magic)), None)


def _decompressed(f, kind, name):
    if kind is None:
        return f
    if kind == "gzip":
        return gzip.GzipFile(fileobj=f, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(f)
    if kind == "bzip2":
        return bz2.BZ2File(f)
    try:
        import zstandard
    except ImportError:
        raise InputError(name, 0, "zstandard-compressed, and the zstandard module is not installed") from None
    return zstandard.ZstdDecompressor().stream_reader(f)


class _Peek:
    """A binary stream with its first bytes read ahead (to tell a tar archive apart) and given back."""

    def __init__(self, f, head):
        self._f, self._head = f, head

    def read(self, n=-1):
        if self._head:
            data, self._head = self._head, b""
            if n is None or n < 0:
                return data + self._f.read()
            if len(data) < n:
                data += self._f.read(n - len(data))
            return data
        return self._f.read(n)


def members(path):
    """Yield (name, binary stream) for every input of ``path``: the file itself, or each member of a tar
    archive. The streams are decompressed; read them before asking for the next one."""
    name = str(path)
    with open_file(path) as raw:
        refuse_untrusted_file(name, os.fstat(raw.fileno()), "import input")  # it decides what a replay writes
        kind = compression(raw.read(8))
        raw.seek(0)
        try:
            stream = _decompressed(raw, kind, name)
            head = stream.read(512)
        except _CORRUPT as e:
            raise InputError(name, 0, f"cannot read it as {kind} data: {_reason(e)}") from None
        if len(head) == 512 and head[257:262] == b"ustar":
            yield from _tar_members(name, _Peek(stream, head))
        else:
            yield name, _Peek(stream, head)


def _tar_members(name, stream):
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                if info.isreg():
                    yield f"{name}:{info.name}", tar.extractfile(info)
    except _CORRUPT as e:
        raise InputError(name, 0, f"damaged tar archive: {_reason(e)}") from None


def blocks(name, stream, size=BLOCK):
    """Yield (text, number of its first line) for ``stream`` in blocks of whole lines, each ending in a newline
    (one is added to a last line without it); carriage returns before a newline are dropped."""
    line = 1
    rest = b""
    while True:
        try:
            data = stream.read(size)
        except _CORRUPT as e:
            raise InputError(name, line + rest.count(b"\n"), f"damaged compressed data: {_reason(e)}") from None
        if not data:
            if rest:
                yield _clean(rest + b"\n"), line
            return
        data = rest + data
        end = data.rfind(b"\n") + 1
        if not end:
            rest = data
            if len(rest) > 64 * size:
                raise InputError(name, line, f"a line longer than {64 * size} bytes")
            continue
        text, rest = data[:end], data[end:]
        yield _clean(text), line
        line += text.count(b"\n")


def _clean(text):
    return text.replace(b"\r\n", b"\n") if b"\r" in text else text


def _reason(e):
    return str(e) or type(e).__name__
