"""One replay worker: pinned to a CPU, issues the IOs of its window at their times, logs their completions.

Pacing: one start instant shared by all workers (CLOCK_MONOTONIC). Before an IO is due the worker sleeps,
inside the IO engine's completion wait so completions are still taken on time, until ``WARM_NS`` before,
then spins (as a normal task, giving its CPU to whatever else is ready there at each turn: the kernel threads
that finish its IOs); every IO due by then goes out in one submission (one system call however many there
are). A late IO is issued at once (no catching-up compression); its lateness is worked out by the collector.
Where the IOs come denser than one per ``DENSE_GAP_NS`` on average (counted per 100 ms window), the IOs due
within ``AUTO_BATCH_NS`` go out together, at most that early, unless a batch window was given (``--batch-window-us``).

Per IO the worker does no Python work at all: the feeder wrote the iocbs, one ``io_submit`` sends a slot
range, one slice assignment stamps their submit time, and each reap copies the kernel's completion events,
as they are, into the completion log with one completion time. Everything else (latency, lateness, errors,
summaries, the per-IO log) is done by the collector in the parent, on another CPU.

While it spins with nothing in flight the worker has the IO engine run a probe (a read the kernel ends at
once, without a bio) every ``PROBE_EVERY_NS``: after an idle stretch a CPU's caches are cold, and the first
IO would otherwise reach the block layer 50-150 µs late (measured on a 2-vCPU VM), shifting the whole replay
against its first IO.

The window may run dry before the iteration's end only if the feeder fell behind: when the worker has sent
every IO of its window and the feeder's lead (every IO due up to it is in the window) is already past, it
counts a stall and the time until IOs arrive (control words STALLS, STALL_NS: reported in the results).
"""

import ctypes
import time
from array import array
from bisect import bisect_right
from os import sched_yield

from .ioengines import open_ioengine
from .ioengines.base import EVENT
from .realtime import AUTO_BATCH_NS, DENSE_IOS, WINDOW_NS, Realtime
from .window import (
    BATCHED,
    END,
    FED,
    ISSUED,
    LEAD,
    NOT_YET,
    PARENTS,
    SPECIALS,
    STALL_NS,
    STALLS,
    THINK_OFFSET,
    LogWriter,
)

WARM_NS = 1_000_000
# As SCHED_FIFO a worker wakes on time, and spinning would starve the normal tasks queued on its CPU (a loop
# device's kworker waited up to 26 ms behind a worker spinning between IOs 370 µs apart): spin less.
WARM_FIFO_NS = 150_000
PROBE_EVERY_NS = 100_000
YIELD_NS = 2_000  # a normal task spinning gives up its turn while its next IO is further away than this
SPIN_NS = 100_000  # load and dependency modes: the last stretch before an IO's moment is spun, not slept
DEFER = 64  # load and dependency modes: completions held before they are written to the log
LOOKAHEAD = 32  # dependency mode: IOs from the first not issued on that may go before it (independent streams)
WAKE_PROBES = 24  # dependency mode: short sleeps timed before the start (wake_cost_ns)
WAKE_SLEEP_NS = 50_000
LATE_SHIFT = 4  # dependency mode: the running mean of the engine's lateness moves 1/16 towards each new value
LATE_CAP_NS = 1_000_000  # a hiccup counts at most this much in it
DRAIN_NS = 1_000_000_000  # after a stop: wait this long for IOs in flight
STOP_POLL_NS = 100_000_000  # a worker looks at its stop flag at least this often, however long it waits
DRY_POLL_NS = 200_000  # with an empty window, look for the feeder's IOs this often
EVENT_SIZE = EVENT.size
PR_SET_TIMERSLACK = 29


def set_timer_slack(ns=1):
    """Ask for precise sleeps (the default 50 µs timer slack would blur the pacing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(ns), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def wake_cost_ns():
    """The median overshoot of short sleeps: what this worker pays to wake up (timer, idle exit, scheduling), about
    what it pays to notice a completion it waited for asleep."""
    mono = time.monotonic_ns
    over = []
    for _ in range(WAKE_PROBES):
        t = mono()
        time.sleep(WAKE_SLEEP_NS / 1e9)
        over.append(mono() - t - WAKE_SLEEP_NS)
    return max(sorted(over)[WAKE_PROBES // 2], 0)


def due_by(due, i, n, mask, cap, horizon):
    """How many of IOs ``i`` to ``n - 1`` (in due order, in the ring ``due``) are due by ``horizon``."""
    r = i & mask
    first = min(n - i, cap - r)
    k = bisect_right(due, horizon, r, r + first) - r
    if k < first or first == n - i:
        return k
    return first + bisect_right(due, horizon, 0, n - i - first)


class Outcome:
    """What a worker reports after an iteration: @issued (IOs it submitted), @inflight (IOs that never came
    back after a stop), @interrupted, @start_wall (CLOCK_REALTIME seconds at the start instant, as this host
    sees it; None if it never started)."""

    def __init__(self, issued, inflight, interrupted, start_wall):
        self.issued, self.inflight, self.interrupted, self.start_wall = issued, inflight, interrupted, start_wall


class Replayer:
    """A worker made ready to replay its window (IO engine open and bound, IO memory touched): ``run`` one
    iteration from a start instant, as many times as asked, then ``close``."""

    def __init__(self, window, probe, opts, prefault):
        self.window, self.opts = window, opts
        self.ioengine = open_ioengine(opts.ioengine, opts.depth)
        self.ioengine.bind(window, probe)
        window.prefault(*prefault)
        self.log = LogWriter(window)
        self.next = 0  # absolute index of the next IO
        self.specials = 0  # special-IO entries used
        self.wake_ns = wake_cost_ns() if window.ordered and opts.mode == "dependency" else 0

    def close(self):
        self.ioengine.close()

    def run(self, start_ns, stop):
        """Replay the window's current iteration from the monotonic instant ``start_ns``; returns an Outcome.
        ``stop()``: True once the replay must end (signal)."""
        rt = Realtime(self.opts.realtime)
        try:
            if self.window.ordered:
                return self._replay_ordered(start_ns, stop, rt)
            return self._replay(start_ns, stop, rt)
        finally:
            rt.stop()

    def _replay_ordered(self, start_ns, stop, rt):
        """The load and dependency modes: each IO once its condition holds.

        load: in window order, each once fewer IOs of its device are in flight than were when it was recorded
        (``limit``), at once.
        dependency: once every completion parent completed (``fin`` of its slot has reached it; every IO below
        ``need`` too), every issue parent went out, and its think time has passed since the latest parent's
        completion; an IO without completion parents keeps its recorded distance from the IO before it (``due``
        difference), counted from that one's issue. IOs up to LOOKAHEAD past the first one waiting may go before
        it (``ahead``). Each IO's moment is worked out when it enters that range, and again only once what it
        waited for happened (``waiters``: the completion or the issue of one IO), so a completion costs the few IOs
        that waited for it, not a scan of the range; one waiting for its moment goes once that moment came
        (``moments``, ``soonest``).
        The moment decided is written over ``due``, so lateness is the engine's delay against its own decision.
        Per IO this takes a few Python steps (the parents, the completion times), unlike the timed loop."""
        win, io, log, opts = self.window, self.ioengine, self.log, self.opts
        mono = time.monotonic_ns
        ctl, due, submit, special, target = win.control, win.due, win.submit, win.special, win.target
        mask, depth = win.mask, opts.depth
        dependency = opts.mode == "dependency"
        parents, nparents, need, think, limit = win.parents, win.nparents, win.need, win.think, win.limit
        fin, fin_time, depths = win.fin, win.fin_time, win.depth
        i = first = self.next
        n, end = ctl[FED], ctl[END]
        s = self.specials
        next_special = special[s & mask] if s < ctl[SPECIALS] else NOT_YET
        busy = {}  # target -> IOs in flight
        inflight = 0
        done_below = i  # every IO below this one completed
        ahead = set()  # IOs from ``i`` on that were issued (the dependency mode issues out of order)
        was_due = {}  # index -> its recorded due time, of the IOs issued since ``i - 1``
        moments = {}  # index -> the moment it may go (its parents are done), until it went
        waiters = {}  # p >= 0: the IOs waiting for the completion of IO p; p < 0: for the issue of IO -1 - p
        woken = []  # IOs whose wait ended: their moment is worked out again
        waiting = None  # what moment() found an IO waiting for (a key of ``waiters``)
        scanned = i  # every IO from ``i`` up to this one has a moment or waits
        epoch, seen, soonest = 0, None, NOT_YET  # epoch: counts issues and completions (what unblocks an IO)
        waited = set()  # IOs whose moment was still ahead when decided: their lateness is the engine's own
        late_mean = 0  # dependency mode: the running mean of that lateness
        offset = self.wake_ns  # ... plus the wake-up cost: what it takes off each recorded think time
        interrupted = False
        while mono() < start_ns - WARM_NS and not stop():
            time.sleep(min(max(start_ns - WARM_NS - mono(), 0), STOP_POLL_NS) / 1e9)
        start_wall = time.time() + (start_ns - mono()) / 1e9
        rt_check = rt.start() - start_ns
        pending = log.pending

        def took(events):
            t = mono() - start_ns
            pending.append((t, events))  # written to the log before the worker waits (or once DEFER are held)
            if len(pending) >= DEFER:
                log.flush()
            got = array("q")
            got.frombytes(events)
            for index in got[0::4]:
                slot = index & mask
                fin[slot] = index
                fin_time[slot] = t
                busy[target[slot]] -= 1
                if index in waiters:
                    woken.extend(waiters.pop(index))
            return len(got) // 4

        def moment(k, slot, i):
            """When IO ``k`` may go (ns after the start), or None while it waits, and then ``waiting`` says for what
            (``i``: the first IO not issued)."""
            nonlocal done_below, waiting
            latest = -1
            base = slot * PARENTS
            for p in parents[base:base + nparents[slot]]:
                if p < 0:  # an issue parent: it must have gone out
                    q = -1 - p
                    if q >= i and q not in ahead:
                        waiting = p
                        return None
                    continue
                done = fin[p & mask]
                if done < p:
                    waiting = p
                    return None
                if done == p and fin_time[p & mask] > latest:
                    latest = fin_time[p & mask]
            if need[slot] > done_below:
                while done_below < k and fin[done_below & mask] >= done_below:
                    done_below += 1
                if need[slot] > done_below:
                    waiting = done_below
                    return None
            if latest >= 0:  # the recorded think time holds the application's wake-up and submission: not twice
                return latest + max(think[slot] - offset, 0)
            before = k - 1  # no completion parent: its recorded distance from the IO before, from its issue
            if before < first:
                return due[slot]
            if before >= i and before not in ahead:
                waiting = -1 - before
                return None
            recorded = was_due.get(before)
            return due[slot] if recorded is None else submit[before & mask] + due[slot] - recorded

        def reap(least, timeout):
            nonlocal epoch
            events = io.reap(least, timeout)
            if not events:
                return 0
            epoch += 1
            return took(events)

        while True:
            now = mono() - start_ns
            if stop():
                interrupted = True
                break
            if now >= rt_check:
                rt_check = rt.tick(now)
            if i >= n:
                n, end = ctl[FED], ctl[END]
                if next_special == NOT_YET and s < ctl[SPECIALS]:
                    next_special = special[s & mask]
            if i >= end:
                if not inflight:
                    break
                inflight -= reap(1, 10_000_000)
                continue
            wait = None  # ns until the next IO may go; None: until a completion
            plan = []  # (index, slot, target, moment) of the IOs that may go now, in window order
            if i < n and now >= 0 and ((epoch, n) != seen or now >= soonest):
                seen, soonest = (epoch, n), NOT_YET
                if dependency:
                    hi = min(n, i + LOOKAHEAD)
                    if i <= next_special < hi:  # a special IO goes at the head, alone (an ioctl)
                        hi = i + 1 if next_special == i else next_special
                    scanned = max(scanned, i)
                    while scanned < hi or woken:
                        if woken:
                            k = woken.pop()
                            if k < i or k in ahead or k >= scanned:
                                continue
                        else:
                            k = scanned
                            scanned += 1
                            if k in ahead:
                                continue
                        at = moment(k, k & mask, i)
                        if at is None:
                            waiters.setdefault(waiting, []).append(k)
                        else:
                            moments[k] = at
                            if at > now:
                                waited.add(k)
                    due_now = []
                    for k, at in moments.items():
                        if k < hi:
                            if at <= now:
                                due_now.append(k)
                            elif at < soonest:
                                soonest = at
                    if due_now:
                        due_now.sort()
                        if next_special == i:
                            due_now = due_now[:1]
                        for k in due_now[:max(depth - inflight, 0)]:
                            plan.append((k, k & mask, target[k & mask], moments[k]))
                else:
                    extra = {}  # IOs of this batch per target
                    k = i
                    stop_at = min(n, i + depth)
                    while k < stop_at and inflight + len(plan) < depth:
                        if k in ahead:
                            k += 1
                            continue
                        if k == next_special and k != i:
                            break  # a special IO goes at the head, alone (an ioctl)
                        slot = k & mask
                        tg = target[slot]
                        if busy.get(tg, 0) + extra.get(tg, 0) >= limit[slot]:
                            break  # load mode: in trace order
                        extra[tg] = extra.get(tg, 0) + 1
                        plan.append((k, slot, tg, now))
                        if k == next_special:
                            break
                        k += 1
            if soonest < NOT_YET:
                wait = max(soonest - now, 0)
            if plan:
                t = mono() - start_ns  # as in timed mode: the submit time is taken before the system call
                done = []
                if plan[0][0] == next_special:
                    io.special(next_special)
                    done = plan[:1]
                    s += 1
                    next_special = special[s & mask] if s < ctl[SPECIALS] else NOT_YET
                else:
                    run = 0
                    while run < len(plan):  # contiguous runs of slots: one system call each
                        end_run = run + 1
                        while end_run < len(plan) and plan[end_run][0] == plan[end_run - 1][0] + 1:
                            end_run += 1
                        sent = io.submit(plan[run][0], plan[end_run - 1][0] + 1)
                        done += plan[run:run + sent]
                        if run + sent < end_run:
                            break  # the kernel took fewer: the rest wait
                        run = end_run
                for k, slot, tg, at in done:
                    busy[tg] = busy.get(tg, 0) + 1
                    if dependency:
                        was_due[k] = due[slot]
                        moments.pop(k, None)
                        if -1 - k in waiters:
                            woken.extend(waiters.pop(-1 - k))
                        if k in waited:  # not one held back by its parents or the depth limit past its moment
                            waited.discard(k)
                            late_mean += (min(max(t - at, 0), LATE_CAP_NS) - late_mean) >> LATE_SHIFT
                            offset = self.wake_ns + late_mean
                    due[slot] = at
                    submit[slot] = t
                    depths[slot] = busy[tg]
                    ahead.add(k)
                while i in ahead:
                    ahead.discard(i)
                    was_due.pop(i - 1, None)
                    i += 1
                inflight += len(done)
                ctl[ISSUED] = i
                epoch += 1
                if not done:
                    inflight -= reap(1, 1_000_000)
                continue
            if log.pending:
                log.flush()
            if i >= n and i < end:  # waiting for the feeder
                wait = DRY_POLL_NS
            if now < 0:
                wait = -now
            if wait is not None and wait <= SPIN_NS:  # spin the last stretch (a sleep overshoots it)
                if inflight:
                    inflight -= reap(0, 0)
                continue
            if inflight:
                inflight -= reap(1, min(wait - SPIN_NS if wait is not None else STOP_POLL_NS, STOP_POLL_NS))
            else:
                time.sleep(min(wait - SPIN_NS if wait is not None else DRY_POLL_NS, STOP_POLL_NS) / 1e9)
        deadline = mono() + DRAIN_NS
        while inflight and mono() < deadline:
            inflight -= reap(1, 10_000_000)
        while log.pending and not log.flush() and mono() < deadline + DRAIN_NS:
            time.sleep(0.001)
        self.next = i if interrupted else end
        self.specials = s
        if dependency:
            ctl[THINK_OFFSET] = offset
        return Outcome(i - first, inflight, interrupted, start_wall)


    def _replay(self, start_ns, stop, rt):
        win, io, log, opts = self.window, self.ioengine, self.log, self.opts
        mono = time.monotonic_ns
        ctl, due, submit, special = win.control, win.due, win.submit, win.special
        mask, cap = win.mask, win.capacity
        no_stall, depth, ahead = opts.no_stall, opts.depth, opts.batch_window_ns or 0
        auto = opts.batch_window_ns is None and not no_stall  # the batch window follows the IOs' density
        batch_check = -WARM_NS - WINDOW_NS  # when to count the coming IOs again (auto)
        i = first = self.next
        n, end = ctl[FED], ctl[END]
        s = self.specials
        next_special = special[s & mask] if s < ctl[SPECIALS] else NOT_YET
        inflight = 0
        interrupted = False
        dry_since = None  # when the window ran dry before the iteration's end (the feeder fell behind)
        last_probe = -WARM_NS
        held = False  # the depth limit was reached since the last look at the scheduling (Realtime.tick)
        while mono() < start_ns - WARM_NS and not stop():
            time.sleep(min(max(start_ns - WARM_NS - mono(), 0), STOP_POLL_NS) / 1e9)
        start_wall = time.time() + (start_ns - mono()) / 1e9
        rt_check = rt.start(due_by(due, i, ctl[FED], mask, cap, WINDOW_NS)) - start_ns
        warm = WARM_FIFO_NS if rt.fifo else WARM_NS

        put, submit_ios, reap = log.put, io.submit, io.reap

        def took(events):
            put(mono() - start_ns, events)
            return len(events) // EVENT_SIZE

        while True:
            now = mono() - start_ns
            if stop():
                interrupted = True
                break
            if now >= rt_check:
                rt_check = rt.tick(now, held, due_by(due, i, n, mask, cap, now + WINDOW_NS))
                held = False
                warm = WARM_FIFO_NS if rt.fifo else WARM_NS
            if auto and now >= batch_check:
                ahead = AUTO_BATCH_NS if due_by(due, i, n, mask, cap, now + WINDOW_NS) > DENSE_IOS else 0
                batch_check = now + WINDOW_NS
                if ahead:
                    ctl[BATCHED] += 1
            if i >= n:  # everything fed is sent: look for more
                n, end = ctl[FED], ctl[END]
                if next_special == NOT_YET and s < ctl[SPECIALS]:
                    next_special = special[s & mask]
                if i >= n and i < end and dry_since is None and now >= 0 and (no_stall or now > ctl[LEAD]):
                    dry_since = now
                    ctl[STALLS] += 1
            if i < n:
                if dry_since is not None:
                    ctl[STALL_NS] += now - dry_since
                    dry_since = None
                if now >= 0 and (no_stall or due[i & mask] <= now):
                    if i == next_special:
                        io.special(i)
                        submit[i & mask] = mono() - start_ns
                        inflight += 1
                        i += 1
                        s += 1
                        next_special = special[s & mask] if s < ctl[SPECIALS] else NOT_YET
                        ctl[ISSUED] = i
                        continue
                    room = depth - inflight
                    if room:
                        r = i & mask
                        last = min(n, i + room, next_special, i + cap - r)  # never across the window's end
                        j = last if no_stall else i + bisect_right(due, now + ahead, r, r + last - i) - r
                        t = mono() - start_ns
                        sent = submit_ios(i, j)
                        if sent:
                            submit[r:r + sent] = array("q", (t,)) * sent
                            inflight += sent
                            i += sent
                            ctl[ISSUED] = i
                        else:  # the kernel took none: make room first
                            events = reap(1, 1_000_000)
                            if events:
                                inflight -= took(events)
            if inflight:
                events = reap(0, 0)
                if events:
                    inflight -= took(events)
            if log.pending:
                log.flush()
            if i >= end:
                if not inflight:
                    break
                events = io.reap(1, 10_000_000)
                if events:
                    inflight -= took(events)
                continue
            if inflight >= depth:
                held = True
                events = io.reap(1, 10_000_000)
                if events:
                    inflight -= took(events)
                continue
            now = mono() - start_ns
            if i < n:
                wait = (0 if no_stall else due[i & mask]) - now
                sleep = wait - warm
            else:  # an empty window: poll for the feeder (dry), or until its lead is near
                lead = ctl[LEAD]
                if ctl[FED] != n or ctl[END] != end:
                    continue  # the feeder wrote more since ``n`` was read: the lead read may be beyond them
                wait = sleep = DRY_POLL_NS if dry_since is not None or no_stall else min(
                    max(lead - now, DRY_POLL_NS), STOP_POLL_NS)
            if wait <= 0:
                continue
            if sleep > 0:  # in the completion wait if IOs are in flight
                if inflight:
                    events = io.reap(1, min(sleep, STOP_POLL_NS))
                    if events:
                        inflight -= took(events)
                else:
                    time.sleep(min(sleep, STOP_POLL_NS) / 1e9)
            elif not inflight and now - last_probe >= PROBE_EVERY_NS and wait > PROBE_EVERY_NS // 2:
                io.probe()
                last_probe = now
            elif not rt.fifo and wait > YIELD_NS:
                sched_yield()
        if dry_since is not None:
            ctl[STALL_NS] += mono() - start_ns - dry_since
        deadline = mono() + DRAIN_NS
        while inflight and mono() < deadline:
            events = io.reap(1, 10_000_000)
            if events:
                inflight -= took(events)
        while log.pending and not log.flush() and mono() < deadline + DRAIN_NS:
            time.sleep(0.001)
        self.next = i if interrupted else end
        self.specials = s
        return Outcome(i - first, inflight, interrupted, start_wall)
