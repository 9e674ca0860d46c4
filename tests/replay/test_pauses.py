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


def test_work_waits_during_a_burst_while_the_window_holds_enough():
    now = 1_000 * MS
    pauses = Pauses([lane(now + QUIET_NS // 2)], timed=True)
    assert pauses.defer(now) and pauses.defer(now + 50 * MS)
    assert not pauses.defer(now + DEFER_MAX_NS)  # never longer than DEFER_MAX_NS
    assert pauses.defer(now + DEFER_MAX_NS + 10 * MS)  # a new wait starts


def test_work_is_done_in_a_pause():
    now = 1_000 * MS
    assert not Pauses([lane(now + 2 * QUIET_NS)], timed=True).defer(now)
    assert not Pauses([lane(now, fed=100, issued=100)], timed=True).defer(now)  # nothing left to send


def test_work_is_done_when_a_window_runs_low():
    now = 1_000 * MS
    low = lane(now, fed=400, issued=100, lead_ns=now + AHEAD_NS - 1)  # 300 of 1,024 slots, less than AHEAD_NS
    assert not Pauses([low], timed=True).defer(now)
    slots = lane(now, fed=700, issued=100, lead_ns=now + AHEAD_NS - 1)  # more than half its slots: enough
    assert Pauses([slots], timed=True).defer(now)
    log = lane(now, logged=513)  # more than half the completion log not collected
    assert not Pauses([log], timed=True).defer(now)
    assert not Pauses([lane(now + QUIET_NS // 2), low], timed=True).defer(now)  # any window decides


def test_ended_windows_and_untimed_modes():
    now = 1_000 * MS
    done = lane(now, fed=100, issued=100, lead_ns=0)
    done.ended = True
    assert not Pauses([done], timed=True).defer(now)
    assert Pauses([done, lane(now)], timed=True).defer(now)
    assert not Pauses([lane(now)], timed=False).defer(now)  # -N, load and dependency modes
