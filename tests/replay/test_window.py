"""The window's shared memory: slot ranges across its end, the completion log (events stamped with their
completion time, read back in order across the ring's end, never more than it holds), and what it costs."""

import struct

from blkfleet.replay.window import EVENT_BYTES, LOG_FULL, LOG_TAIL, MIN_WINDOW_IOS, LogWriter, Window, read_log, size_of

EVENT = struct.Struct("=QQqq")


def test_slots_wrap():
    w = Window(MIN_WINDOW_IOS)
    assert w.slots(10, 20) == [(10, 20, 10)]
    assert w.slots(60, 70) == [(60, 64, 60), (0, 6, 64)]
    assert w.slots(64, 128) == [(0, 64, 64)]
    assert w.slots(5, 5) == []
    w.close()


def test_completion_log_in_order_across_its_end():
    w = Window(MIN_WINDOW_IOS)
    log = LogWriter(w)
    tail, got, want = 0, [], []
    for t in range(200):
        n = t % 9
        log.put(t, b"".join(EVENT.pack(1000 * t + k, 77, 4096, 0) for k in range(n)))
        want += [(1000 * t + k, t, 4096) for k in range(n)]
        if t % 3 == 2:  # the collector looks now and then
            events, tail = read_log(w, tail)
            w.control[LOG_TAIL] = tail
            got += [(events[i], events[i + 1], events[i + 2]) for i in range(0, len(events), 4)]
    events, tail = read_log(w, tail)
    got += [(events[i], events[i + 1], events[i + 2]) for i in range(0, len(events), 4)]
    assert got == want and w.control[LOG_FULL] == 0
    w.close()


def test_a_full_log_keeps_events_in_the_worker():
    w = Window(MIN_WINDOW_IOS)
    log = LogWriter(w)
    one = EVENT.pack(1, 0, 4096, 0)
    for t in range(w.log_events + 5):  # nobody reads: the last 5 cannot go in
        log.put(t, one)
    assert w.control[LOG_FULL] == 5 and len(log.pending) == 5
    events, tail = read_log(w, 0)
    assert len(events) == 4 * w.log_events and events[1::4].tolist() == list(range(w.log_events))
    w.control[LOG_TAIL] = tail
    assert log.flush() and not log.pending
    events, _tail = read_log(w, tail)
    assert events[1::4].tolist() == list(range(w.log_events, w.log_events + 5))
    w.close()


def test_size():
    assert size_of(1 << 16) == Window(1 << 16).size_bytes
    assert size_of(1 << 16) / (1 << 16) < 135  # bytes per IO: iocb 64, 5 words, target, op, 32 of log
    assert EVENT.size == EVENT_BYTES


def test_the_log_is_read_a_piece_at_a_time():
    """``read_log(window, tail, most)``: the events in order, never more than ``most`` per read."""
    w = Window(MIN_WINDOW_IOS)
    log = LogWriter(w)
    for t in range(50):
        log.put(t, EVENT.pack(t, 0, 4096, 0))
    tail, got = 0, []
    while True:
        events, tail = read_log(w, tail, 7)
        if not events:
            break
        assert len(events) <= 4 * 7
        got += events[1::4].tolist()
        w.control[LOG_TAIL] = tail
    assert got == list(range(50)) and tail == 50
    w.close()
