"""Replay operations and flags, and how a blktrace Q event maps onto them."""

from ..trace.actions import C_AHEAD, C_DISCARD, C_FLUSH, C_FUA, C_META, C_READ, C_SYNC, C_WRITE_ZEROES

READ, WRITE, DISCARD, FLUSH, WRITE_ZEROES = 0, 1, 2, 3, 4
OP_NAMES = ("read", "write", "discard", "flush", "write_zeroes")

F_FUA, F_SYNC, F_META, F_AHEAD, F_PREFLUSH = 1, 2, 4, 8, 16
FLAG_NAMES = ((F_FUA, "fua"), (F_SYNC, "sync"), (F_META, "meta"), (F_AHEAD, "ahead"), (F_PREFLUSH, "preflush"))


def classify(action, nbytes):
    """(op, flags) of a queued bio from its action word and length."""
    flags = 0
    if action & C_FUA:
        flags |= F_FUA
    if action & C_SYNC:
        flags |= F_SYNC
    if action & C_META:
        flags |= F_META
    if action & C_AHEAD:
        flags |= F_AHEAD
    if action & C_DISCARD:
        return DISCARD, flags
    if action & C_WRITE_ZEROES:
        return WRITE_ZEROES, flags
    if action & C_FLUSH:
        if nbytes == 0:
            return FLUSH, flags
        flags |= F_PREFLUSH
    return (READ if action & C_READ else WRITE), flags


def flag_names(flags):
    return [name for bit, name in FLAG_NAMES if flags & bit]
