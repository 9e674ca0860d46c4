"""The file an export writes: a new file beside the target (never through a link or over an existing file),
renamed over it only when complete; removed on any failure."""

import contextlib
import os

from ..files import open_new


@contextlib.contextmanager
def replaced(path):
    """A text file to fill; ``path`` is replaced by it when the block ends without an exception."""
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{os.urandom(6).hex()}.tmp")
    try:
        with open_new(tmp, binary=False) as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
