"""IO engines: Linux native AIO (default), io_uring, and a synchronous fallback."""

from .base import OP_FLUSH, OP_READ, OP_WRITE, IOEngine

IOENGINES = ("aio", "uring", "sync")


def open_ioengine(name, depth):
    """An engine by name; ``auto`` tries aio, then io_uring, then sync."""
    from .aio import AioEngine
    from .sync import SyncEngine
    from .uring import UringEngine

    classes = {"aio": AioEngine, "uring": UringEngine, "sync": SyncEngine}
    if name != "auto":
        return classes[name](depth)
    errors = []
    for cls in (AioEngine, UringEngine, SyncEngine):
        try:
            return cls(depth)
        except OSError as e:
            errors.append(f"{cls.name}: {e}")
    raise OSError("no IO engine works here: " + "; ".join(errors))


__all__ = ["IOENGINES", "OP_FLUSH", "OP_READ", "OP_WRITE", "IOEngine", "open_ioengine"]
