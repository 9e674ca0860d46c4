"""Operations on IOChunk columns that keep them columns: join, cut, pick, sort, test the order.

An IOChunk (replayfile.reader) holds ``times``, ``sectors``, ``nbytes`` (``array('q')``), ``ops`` and ``flags``
(``bytes``) and ``pids`` (``array('I')`` or None). Everything here runs per column in C loops (slices,
``compress``, ``map`` over ``__getitem__``), about 20 to 60 ns per IO and column, never a Python object per IO
that outlives the call.
"""

from array import array
from itertools import compress, islice
from operator import le

from ..replayfile.reader import IOChunk


def make(times=(), sectors=(), nbytes=(), ops=b"", flags=None, pids=None):
    """An IOChunk from sequences (``flags`` default: none set)."""
    ops = bytes(ops)
    return IOChunk(array("q", times), array("q", sectors), array("q", nbytes), ops,
                   bytes(len(ops)) if flags is None else bytes(flags), None if pids is None else array("I", pids))


def empty():
    return make()


def join(chunks):
    """One chunk of several, in order (pids kept only when every part has them)."""
    chunks = [c for c in chunks if len(c)]
    if len(chunks) == 1:
        return chunks[0]
    if not chunks:
        return empty()
    times, sectors, nbytes = array("q"), array("q"), array("q")
    for c in chunks:
        times.extend(c.times)
        sectors.extend(c.sectors)
        nbytes.extend(c.nbytes)
    pids = None
    if all(c.pids is not None for c in chunks):
        pids = array("I")
        for c in chunks:
            pids.extend(c.pids)
    return IOChunk(times, sectors, nbytes, b"".join(c.ops for c in chunks), b"".join(c.flags for c in chunks),
                   pids)


def cut(chunk, start, stop=None):
    """The IOs ``start:stop`` of a chunk."""
    s = slice(start, stop)
    return IOChunk(chunk.times[s], chunk.sectors[s], chunk.nbytes[s], chunk.ops[s], chunk.flags[s],
                   None if chunk.pids is None else chunk.pids[s])


def pick(chunk, index):
    """The IOs at the positions ``index`` (a sequence of ints), in that order."""
    def col(c, code):
        return array(code, map(c.__getitem__, index))

    return IOChunk(col(chunk.times, "q"), col(chunk.sectors, "q"), col(chunk.nbytes, "q"),
                   bytes(map(chunk.ops.__getitem__, index)), bytes(map(chunk.flags.__getitem__, index)),
                   None if chunk.pids is None else col(chunk.pids, "I"))


def keep(chunk, mask):
    """The IOs whose ``mask`` item is true (a bytes or any iterable of truth values), in order."""
    mask = bytes(mask) if not isinstance(mask, (bytes, bytearray)) else mask
    return IOChunk(array("q", compress(chunk.times, mask)), array("q", compress(chunk.sectors, mask)),
                   array("q", compress(chunk.nbytes, mask)), bytes(compress(chunk.ops, mask)),
                   bytes(compress(chunk.flags, mask)),
                   None if chunk.pids is None else array("I", compress(chunk.pids, mask)))


def with_columns(chunk, times=None, sectors=None, nbytes=None, ops=None, flags=None):
    """The chunk with some columns replaced."""
    return IOChunk(chunk.times if times is None else times, chunk.sectors if sectors is None else sectors,
                   chunk.nbytes if nbytes is None else nbytes, chunk.ops if ops is None else ops,
                   chunk.flags if flags is None else flags, chunk.pids)


def rising(times):
    """Whether the times never go down."""
    return all(map(le, times, islice(times, 1, None)))


def first_drop(times):
    """Index of the first time below the one before it, or None."""
    if rising(times):
        return None
    return next(i for i in range(1, len(times)) if times[i] < times[i - 1])


def sort(chunk):
    """The chunk in time order (stable: IOs of equal time keep their order)."""
    if rising(chunk.times):
        return chunk
    return pick(chunk, sorted(range(len(chunk)), key=chunk.times.__getitem__))
