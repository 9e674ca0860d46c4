"""Which queued IOs a completion completes: Q and C events of one device, paired in time order.

A C event completes the queued IOs it covers: starting at its sector, the oldest pending Q at that sector, then
the one at the sector where that IO ends, and so on until the C event's end (the bios a request merged). A C
that covers only the start of a Q (the bio was split into several requests) leaves its rest pending: the IO is
complete with its last part. With ``empty``, a C without data completes the oldest pending Q without data at its
sector (an empty flush completes as the empty request it was queued as); without it, both are left out, as btt
does. A Q whose completion never comes stays pending until ``limit`` are waiting, then the oldest are forgotten.

Each Q carries a token (its time, or the caller's record of it); ``completed`` returns the tokens of the IOs a C
finished, ``queued`` those it had to forget.
"""

from collections import deque

from .actions import is_complete
from .reader import TraceReader

MAX_PENDING = 1 << 20
PEEK_RECORDS = 65536  # records of each file looked at for a completion before the whole capture is read


def has_completions(paths):
    """Whether any of the first PEEK_RECORDS records of the trace files is a completion."""
    for path in paths:
        with TraceReader(path) as reader:
            for i, rec in enumerate(reader):
                if is_complete(rec.action):
                    return True
                if i >= PEEK_RECORDS:
                    break
    return False


class Matcher:
    """Pending Qs of one device. @in_flight: IOs queued and not completed (nor forgotten); @unmatched: Cs that
    completed nothing; @forgotten: Qs dropped for the limit."""

    def __init__(self, empty=False, limit=MAX_PENDING):
        self.pending = {}  # sector -> deque of [token, bytes]; dict order: the sectors' first arrivals
        self.flushes = {}  # sector -> deque of tokens of Qs without data (``empty`` only)
        self.empty = empty
        self.limit = limit
        self.in_flight = 0
        self.unmatched = 0
        self.forgotten = 0

    def queued(self, sector, nbytes, token):
        """A Q; returns the tokens forgotten to stay within the limit (usually none)."""
        if nbytes:
            self.pending.setdefault(sector, deque()).append([token, nbytes])
        elif self.empty:
            self.flushes.setdefault(sector, deque()).append(token)
        else:
            return ()
        self.in_flight += 1
        return self._forget() if self.in_flight > self.limit else ()

    def completed(self, sector, nbytes):
        """A C; returns the tokens of the IOs it completed, in the order it covers them."""
        if not nbytes:
            waiting = self.flushes.get(sector) if self.empty else None
            if not waiting:
                self.unmatched += self.empty
                return ()
            token = waiting.popleft()
            if not waiting:
                del self.flushes[sector]
            self.in_flight -= 1
            return (token,)
        pending, done = self.pending, []
        end = sector + (nbytes >> 9)
        at, matched = sector, 0
        while at < end:
            waiting = pending.get(at)
            if not waiting:
                break
            entry = waiting.popleft()
            if not waiting:
                del pending[at]
            matched += 1
            q_end = at + max(entry[1] >> 9, 1)
            if q_end > end:  # split: this C completes the start of the IO, its rest comes later
                entry[1] = (q_end - end) << 9
                pending.setdefault(end, deque()).append(entry)
                break
            done.append(entry[0])
            self.in_flight -= 1
            at = q_end
        if not matched:
            self.unmatched += 1
        return done

    def _forget(self):
        """Forget the Qs of the sector that has waited longest (a lost completion must not hold memory)."""
        gone = []
        while self.in_flight > self.limit:
            table = self.pending if self.pending else self.flushes
            waiting = table.pop(next(iter(table)))
            tokens = [e[0] for e in waiting] if table is self.pending else list(waiting)
            gone += tokens
            self.in_flight -= len(tokens)
            self.forgotten += len(tokens)
        return gone
