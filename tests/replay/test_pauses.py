"""When the parent's feeding and collecting wait for a pause in the trace (replay/pauses.py), decided on a real
window's control words and due times."""

from types import SimpleNamespace

from blkfleet.replay.pauses import AHEAD_NS, DEFER_MAX_NS, QUIET_NS, Pauses
from blkfleet.replay.window import FED, ISSUED, LEAD, LOG_HEAD, LOG_TAIL, Window

MS = 1_000_000


def lane(next_due_ns, fed=600, issued=100, lead_ns=2_000 * MS, logged=0, capacity=1024):
    """A lane whose worker has sent ``issued`` of ``fed`` IOs, the next due at ``next_due_ns``."""
    win = Window(capacity, io_bytes=1 << 20)
    win.due[issued & win.mask] = next_due_ns
    win.control[FED], win.control[ISSUED], win.control[LEAD] = fed, issued, lead_ns
    win.control[LOG_HEAD], win.control[LOG_TAIL] = logged, 0
    return SimpleNamespace(window=win, ended=False)


def in_pause(pauses, now):
    """Show ``pauses`` its worker in a pause at ``now`` (it works then)."""
    win = pauses.lanes[0].window
    due = win.due[win.control[ISSUED] & win.mask]
    win.due[win.control[ISSUED] & win.mask] = now + 2 * QUIET_NS
    assert not pauses.defer(now)
    win.due[win.control[ISSUED] & win.mask] = due


def test_work_waits_during_a_burst_after_a_pause_while_the_window_holds_enough():
    now = 1_000 * MS
    pauses = Pauses([lane(now + QUIET_NS // 2)], timed=True)
    assert not pauses.defer(now)  # no pause seen yet: a steady trace, the work is done every tick
    in_pause(pauses, now)
    assert pauses.defer(now + 10 * MS) and pauses.defer(now + 50 * MS)
    assert not pauses.defer(now + 10 * MS + DEFER_MAX_NS)  # never longer than DEFER_MAX_NS
    in_pause(pauses, now + 120 * MS)
    assert pauses.defer(now + 130 * MS)  # a new wait starts
    assert not pauses.defer(now + 120 * MS + DEFER_MAX_NS + 1)  # no pause seen for too long


def primed(*lanes):
    """Pauses over ``lanes`` that saw a pause just before 1 s."""
    pauses = Pauses(list(lanes), timed=True)
    pauses.pause = 1_000 * MS - 1
    return pauses


def test_work_is_done_in_a_pause():
    now = 1_000 * MS
    assert not Pauses([lane(now + 2 * QUIET_NS)], timed=True).defer(now)
    assert not Pauses([lane(now, fed=100, issued=100)], timed=True).defer(now)  # nothing left to send


def test_work_is_done_when_a_window_runs_low():
    now = 1_000 * MS
    low = lane(now, fed=400, issued=100, lead_ns=now + AHEAD_NS - 1)  # 300 of 1,024 slots, less than AHEAD_NS
    assert not primed(low).defer(now)
    slots = lane(now, fed=700, issued=100, lead_ns=now + AHEAD_NS - 1)  # more than half its slots: enough
    assert primed(slots).defer(now)
    log = lane(now, logged=513)  # more than half the completion log not collected
    assert not primed(log).defer(now)
    assert not primed(lane(now + QUIET_NS // 2), low).defer(now)  # any window decides


def test_ended_windows_and_untimed_modes():
    now = 1_000 * MS
    done = lane(now, fed=100, issued=100, lead_ns=0)
    done.ended = True
    assert not Pauses([done], timed=True).defer(now)
    assert primed(done, lane(now)).defer(now)
    untimed = primed(lane(now))
    untimed.timed = False  # -N, load and dependency modes
    assert not untimed.defer(now)
