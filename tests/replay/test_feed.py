"""The feeder on real replay files (no device needed): streams merged in due order against one genesis, a btrecord
file stepping back in time, window bounds in IOs and in time, the same IO sequence whatever the window size
(checked against an obvious whole-trace merge), hundreds of targets, skipped and special IOs, misfits."""

import heapq
import random
from array import array

import pytest

from blkfleet.errors import BlkfleetError
from blkfleet.replay import feed
from blkfleet.replay.feed import PUMP_GROW, SHARE_IOS, SHARE_LEAD_NS, Feeder, Lane, genesis_of, open_sources
from blkfleet.replay.window import (
    END,
    FED,
    FREED,
    IOCB_WORDS,
    ISSUED,
    LEAD,
    NOT_YET,
    SPECIALS,
    W_DATA,
    W_NBYTES,
    W_OFFSET,
    WINDOW_NS,
    Window,
)
from blkfleet.replayfile import compat, native
from blkfleet.replayfile.ops import DISCARD, FLUSH, READ, WRITE


class Target:
    """What the feeder reads of a replay.target.Target."""

    def __init__(self, name, size=1 << 30, block_size=512):
        self.recorded, self.path = name, f"/dev/{name}"
        self.descriptor, self.size, self.block_size = 100, size, block_size


def write_native(path, ios, bunch=4):
    """ios: [(time, sector, nbytes, op)] in time order."""
    w = native.NativeWriter(path)
    for a in range(0, len(ios), bunch):
        part = ios[a:a + bunch]
        t0 = part[0][0]
        w.add_bunch(t0, [(s, n, t - t0, op, 0, 1) for t, s, n, op in part])
    w.close()


def feeder_for(directory, devices, capacity=1 << 16, acc=1.0, write_enable=False, no_stall=False, targets=None):
    sources = open_sources(str(directory), devices)
    targets = targets or [Target(d) for d in dict.fromkeys(s.device for s in sources)]
    index = {t.recorded: i for i, t in enumerate(targets)}
    for s in sources:
        s.target = index[s.device]
    lane = Lane(0, sources, Window(capacity))
    feeder = Feeder([lane], genesis_of(sources), acc, targets, write_enable, no_stall)
    feeder.start_iteration(first=True)
    return feeder, lane


def drain(lane, upto=None):
    """(index, due, target, offset, nbytes, op) of the window's IOs from FREED to FED, then free them."""
    win = lane.window
    ctl = win.control
    out = []
    for k in range(ctl[FREED], ctl[FED] if upto is None else upto):
        r = k & win.mask
        q = IOCB_WORDS * r
        assert win.iocb[q + W_DATA] == k
        out.append((k, win.due[r], win.target[r], win.iocb[q + W_OFFSET], win.iocb[q + W_NBYTES], win.op[r]))
    ctl[FREED] = out[-1][0] + 1 if out else ctl[FREED]
    return out


def test_streams_merge_in_time_order_against_one_genesis(tmp_path):
    write_native(tmp_path / "sda.replay.0", [(1000, 0, 4096, READ), (3000, 8, 4096, READ), (5000, 16, 4096, READ)])
    write_native(tmp_path / "sdb.replay.0", [(2000, 800, 4096, READ), (3000, 808, 4096, READ),
                                             (9000, 816, 4096, READ)])
    feeder, lane = feeder_for(tmp_path, ["sda", "sdb"], acc=2.0)
    feeder.pump(0)
    got = drain(lane)
    assert [g[1] for g in got] == [0, 500, 1000, 1000, 2000, 4000]
    assert [g[2] for g in got] == [0, 1, 0, 1, 0, 1]  # equal times: the first stream's IO first
    assert [g[3] for g in got] == [0, 800 * 512, 8 * 512, 808 * 512, 16 * 512, 816 * 512]
    assert lane.window.control[END] == 6 and lane.ended


def test_a_btrecord_stream_stepping_back_keeps_its_order(tmp_path):
    w = compat.BtrecordWriter(tmp_path / "sda.replay.0")  # btrecord files may step back in time
    for t, sector in ((1000, 0), (4000, 8), (2000, 16), (5000, 24)):
        w.add_bunch(t, [(sector, 4096, 1)])
    w.close()
    w = compat.BtrecordWriter(tmp_path / "sda.replay.1")
    w.add_bunch(3000, [(800, 4096, 1)])
    w.close()
    feeder, lane = feeder_for(tmp_path, ["sda"])
    assert feeder.genesis == 1000
    feeder.pump(0)
    got = drain(lane)
    assert [g[3] // 512 for g in got] == [0, 800, 8, 16, 24]
    assert [g[1] for g in got] == [0, 2000, 3000, 3000, 4000]  # the IO timed 2000 goes right after the 3000 one


def reference(directory, devices):
    """The whole trace merged the obvious way: (due, target, offset, nbytes) in due order, ties by stream then
    file order."""
    rows = []
    streams = []
    for d, dev in enumerate(devices):
        for cpu in range(8):
            path = directory / f"{dev}.replay.{cpu}"
            if path.exists():
                with native.NativeReader(path) as r:
                    ios = [(t + dt, s, n) for t, packets in r.bunches() for s, n, dt, *_ in packets]
                streams.append([(t, len(streams), k, d, s * 512, n) for k, (t, s, n) in enumerate(ios)])
    genesis = min(st[0][0] for st in streams)
    for t, _sid, _k, d, off, n in heapq.merge(*streams):
        rows.append((t - genesis, d, off, n))
    return rows


@pytest.mark.parametrize("capacity", [64, 1024, 1 << 16])
def test_any_window_gives_the_same_ios_in_the_same_order(tmp_path, capacity):
    """Three streams of random times (ties included) on two devices, fed through windows of 64 IOs (the feeder
    stops, the consumer frees, many times), 1024 and 65536 (all at once): the same sequence as an obvious
    whole-trace merge, and never more than the window's capacity unfreed."""
    rng = random.Random(capacity)
    for dev, cpu in (("sda", 0), ("sda", 1), ("sdb", 2)):
        t, ios = 1_000_000, []
        for _ in range(3000):
            t += rng.choice((0, 0, 1000, 50_000, 3_000_000))
            ios.append((t, rng.randrange(1 << 16) * 8, 4096 * rng.randint(1, 4), READ))
        write_native(tmp_path / f"{dev}.replay.{cpu}", ios, bunch=rng.randint(1, 64))
    (tmp_path / "sdb.replay.0").write_bytes((tmp_path / "sdb.replay.2").read_bytes())  # CPU 0 of sdb holds IOs too
    (tmp_path / "sdb.replay.1").write_bytes((tmp_path / "sdb.replay.2").read_bytes())
    feeder, lane = feeder_for(tmp_path, ["sda", "sdb"], capacity=capacity, no_stall=True)
    got = []
    while not lane.ended or lane.window.control[FREED] < lane.window.control[FED]:
        feeder.pump(0, budget=rng.randint(1, 3 * capacity))
        assert lane.window.control[FED] - lane.window.control[FREED] <= capacity
        fed = lane.window.control[FED]
        got += drain(lane, rng.randint(lane.window.control[FREED], fed) if fed > lane.window.control[FREED] else None)
    assert [(g[1], g[2], g[3], g[4]) for g in got] == reference(tmp_path, ["sda", "sdb"])
    assert [g[0] for g in got] == list(range(len(got)))


def test_the_window_holds_no_io_due_beyond_its_time(tmp_path):
    """One IO per ms over 10 s: the window stops at 2 s ahead of the worker's time (and its lead says so),
    whatever room it has; later pumps move on with the time."""
    write_native(tmp_path / "sda.replay.0", [(1_000_000 * k, 8 * k, 4096, READ) for k in range(10_000)], bunch=100)
    feeder, lane = feeder_for(tmp_path, ["sda"])
    ctl = lane.window.control
    feeder.pump(0, budget=1 << 20)
    dues = [g[1] for g in drain(lane)]
    assert max(dues) <= WINDOW_NS < max(dues) + 1_000_000 and len(dues) == 2001
    assert WINDOW_NS - 1_000_000 <= ctl[LEAD] <= WINDOW_NS
    feeder.pump(5_000_000_000, budget=1 << 20)
    dues = [g[1] for g in drain(lane)]
    assert dues[0] == WINDOW_NS + 1_000_000 and dues[-1] == 7_000_000_000
    feeder.pump(20_000_000_000, budget=1 << 20)
    assert ctl[END] == ctl[FED] == 10_000 and ctl[LEAD] == NOT_YET


def test_hundreds_of_targets(tmp_path):
    """300 recorded devices, one IO each, onto 300 targets: target indexes beyond 127 (and 255) are kept."""
    for d in range(300):
        write_native(tmp_path / f"d{d}.replay.0", [(1000 + d, 8 * d, 4096, READ)])
    names = [f"d{d}" for d in range(300)]
    feeder, lane = feeder_for(tmp_path, names)
    feeder.pump(0)
    got = drain(lane)
    assert [g[2] for g in got] == list(range(300))
    assert [g[3] for g in got] == [4096 * d for d in range(300)]


def test_a_pump_writes_about_what_the_worker_took(tmp_path):
    """Without a budget, a pump writes what the worker submitted since the last one, and PUMP_GROW more."""
    write_native(tmp_path / "sda.replay.0", [(1000 * k, 8 * k, 4096, READ) for k in range(20000)], bunch=64)
    feeder, lane = feeder_for(tmp_path, ["sda"])
    ctl = lane.window.control
    feeder.pump(0)
    assert ctl[FED] == PUMP_GROW
    ctl[ISSUED] = 1500  # the worker took 1,500
    feeder.pump(0)
    assert ctl[FED] == 2 * PUMP_GROW + 1500


def test_skipped_and_special_ios(tmp_path):
    ios = [(1000, 0, 4096, READ), (2000, 8, 4096, WRITE), (3000, 16, 1 << 20, DISCARD), (4000, 0, 0, FLUSH),
           (5000, 24, 4096, READ)]
    write_native(tmp_path / "sda.replay.0", ios)
    feeder, lane = feeder_for(tmp_path, ["sda"])
    feeder.pump(0)
    got = drain(lane)
    assert [g[5] for g in got] == [READ, READ, READ]  # a write read back; discard and flush skipped
    assert dict(lane.skipped) == {(0, DISCARD): 1, (0, FLUSH): 1}
    assert lane.window.control[SPECIALS] == 0
    feeder, lane = feeder_for(tmp_path, ["sda"], write_enable=True)
    feeder.pump(0)
    got = drain(lane)
    assert [g[5] for g in got] == [READ, WRITE, DISCARD, FLUSH, READ]
    win = lane.window
    assert win.control[SPECIALS] == 1 and win.special[0] == 2  # the discard: an ioctl of the worker's
    assert not lane.skipped


def test_an_io_beyond_the_target_is_refused(tmp_path):
    write_native(tmp_path / "sda.replay.0", [(1000, 0, 4096, READ), (2000, (1 << 21) - 4, 4096, READ)])
    feeder, _lane = feeder_for(tmp_path, ["sda"], targets=[Target("sda", size=1 << 30)])
    with pytest.raises(BlkfleetError, match=r"/dev/sda: IOs of sda do not fit it .*first: offset 1073739776 \+ 4096"):
        feeder.pump(0)


def test_native_times_going_backwards_are_refused(tmp_path):
    w = native.NativeWriter(tmp_path / "sda.replay.0")
    w.add_bunch(5000, [(0, 4096, 0, READ, 0, 1)])
    w.add_bunch(4000, [(8, 4096, 0, READ, 0, 1)])
    w.close()
    with pytest.raises(BlkfleetError, match="IO times go backwards"):
        feeder, _lane = feeder_for(tmp_path, ["sda"])
        feeder.pump(0)


def test_the_window_says_when_all_its_ios_are_of_one_size(tmp_path):
    """The collector checks such a window's results with one count: a second size, or an IO other than a read
    or write, must turn it off for good."""
    write_native(tmp_path / "sda.replay.0", [(1000 * k, 8 * k, 4096, READ) for k in range(1, 9)])
    feeder, lane = feeder_for(tmp_path, ["sda"])
    feeder.pump(0)
    assert lane.window.one_size == 4096
    for ios, write_enable in (([(1000, 0, 4096, READ), (2000, 8, 8192, READ), (3000, 16, 4096, READ)], False),
                              ([(1000, 0, 4096, READ), (2000, 0, 0, FLUSH), (3000, 16, 4096, READ)], True)):
        write_native(tmp_path / "sda.replay.0", ios)
        feeder, lane = feeder_for(tmp_path, ["sda"], write_enable=write_enable)
        feeder.pump(0)
        assert lane.window.one_size == 0


def test_misaligned_ios_are_refused(tmp_path):
    write_native(tmp_path / "sda.replay.0", [(1000, 8, 4096, READ), (2000, 9, 4096, READ)])
    feeder, _lane = feeder_for(tmp_path, ["sda"], targets=[Target("sda", block_size=4096)])
    with pytest.raises(BlkfleetError, match=r"logical block size 4096\); first: offset 4608 \+ 4096"):
        feeder.pump(0)
    write_native(tmp_path / "sda.replay.0", [(1000, 8, 4096, READ), (2000, (1 << 21) - 8, 4096, READ)])
    feeder, lane = feeder_for(tmp_path, ["sda"], targets=[Target("sda", size=1 << 30, block_size=4096)])
    feeder.pump(0)  # the last IO ends at the target's end: it fits
    assert len(drain(lane)) == 2


def test_lanes_arithmetic_matches_per_item():
    from blkfleet.replay import lanes

    values = array("q", [0, 1, (1 << 54) - 1, 12345, 1 << 40])
    n = len(values)
    assert list(lanes.column(lanes.lanes(values) << 9, n)) == [v << 9 for v in values]
    assert list(lanes.column(lanes.lanes(values) + lanes.indexes(n), n)) == [v + i for i, v in enumerate(values)]
    assert list(lanes.column(lanes.lanes(values) & lanes.repeat(0xFFFF, n), n)) == [v & 0xFFFF for v in values]


def test_an_unknown_recorded_depth_sets_no_load_limit(tmp_path):
    """A version 2 IO whose recorded in-flight count is 0 (not known) got a load-mode limit of 0, which the worker
    never passes (``busy >= limit``): the replay waited for ever. It now has none; known counts are kept."""
    w = native.NativeWriter(tmp_path / "sda.replay.0", timing=True)
    w.add_bunch(1000, [(8 * k, 4096, k, READ, 0, 1) for k in range(3)],
                [(0, 0, 500, 0, []), (1, 0, 500, 2, []), (2, 0, 500, 0, [1])])
    w.close()
    sources = open_sources(str(tmp_path), ["sda"], timing=True)
    sources[0].target = 0
    lane = Lane(0, sources, Window(64, ordered=True))
    feeder = Feeder([lane], genesis_of(sources), 1.0, [Target("sda")], False, False, mode="load")
    feeder.start_iteration(first=True)
    feeder.pump(0)
    assert lane.window.control[FED] == 3
    assert list(lane.window.limit[:3]) == [0xFFFFFFFF, 2, 0xFFFFFFFF]


@pytest.mark.parametrize("mode", ["load", "dependency"])
def test_a_slowed_replay_of_a_very_long_trace(tmp_path, mode):
    """With -x below 1 an IO 2^62 ns after the first (and its think time) was due beyond 2^63 ns: writing it into
    the window raised OverflowError (a traceback mid-replay). It is now due at the latest time, never reached."""
    w = native.NativeWriter(tmp_path / "sda.replay.0", timing=True)
    w.add_bunch(1000, [(0, 4096, 0, READ, 0, 1)], [(0, 0, 500, 1, [])])
    w.add_bunch(1 << 62, [(8, 4096, 0, READ, 0, 1)], [(1, 1 << 62, 500, 1, [1])])
    w.close()
    sources = open_sources(str(tmp_path), ["sda"], timing=True)
    sources[0].target = 0
    lane = Lane(0, sources, Window(64, ordered=True))
    feeder = Feeder([lane], genesis_of(sources), 0.1, [Target("sda")], False, False, mode=mode)
    feeder.start_iteration(first=True)
    feeder.pump(0)
    win = lane.window
    assert win.control[FED] == 2 and list(win.due[:2]) == [0, NOT_YET - 1] and win.think[1] == NOT_YET - 1


@pytest.mark.parametrize("no_stall", [False, True])
def test_a_pump_well_ahead_offers_the_cpu_between_pieces(tmp_path, monkeypatch, no_stall):
    """A timed pump whose window is more than SHARE_LEAD_NS ahead of its worker writes SHARE_IOS IOs at a time and
    offers the CPU (sched_yield) between them; with less lead, or with -N (no lead to keep), in one go. The
    window holds the same IOs either way."""
    write_native(tmp_path / "sda.replay.0", [(10_000 * k, 8 * k, 4096, READ) for k in range(60_000)], bunch=64)
    yields = []
    monkeypatch.setattr(feed.os, "sched_yield", lambda: yields.append(1))
    feeder, lane = feeder_for(tmp_path, ["sda"], no_stall=no_stall)
    ctl = lane.window.control
    feeder.pump(0, budget=5_000)
    feeder.pump(0, budget=15_000)  # it began 50 ms ahead: not far enough to share
    assert not yields and ctl[FED] == 20_000
    if not no_stall:
        assert ctl[LEAD] > SHARE_LEAD_NS
    feeder.pump(0, budget=4 * SHARE_IOS + 10)
    assert len(yields) == (0 if no_stall else 4)
    feeder.pump(0, budget=1 << 20)
    assert ctl[END] == ctl[FED] == 60_000
    got = drain(lane)
    assert [(g[1], g[2], g[3], g[4]) for g in got] == reference(tmp_path, ["sda"])
