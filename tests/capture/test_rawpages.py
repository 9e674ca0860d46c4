"""Ring-buffer page parsing and conversion, on synthetic pages; blktrace output parsing; summaries."""

import io
import os
import struct

from blkfleet.capture import rawpages, state
from blkfleet.capture.blktrace import parse_totals
from blkfleet.capture.control import finish_summary, inspect
from blkfleet.process import process_start
from blkfleet.trace import TraceReader, TraceRecord, TraceWriter

BLK = 14
SDA = 8 << 20
Q_READ = 0x00110001
UNPLUG = 0x0011000A
LAYOUT = rawpages.PageLayout(page_size=4096, byteorder="<")


def rec(time, cpu=0, action=Q_READ, sector=0, nbytes=4096, pdu=b"", pid=77):
    return TraceRecord(time, sector, nbytes, action, pid, SDA, cpu, 0, pdu)


def entry(r, etype=BLK):
    """The kernel's ring-buffer entry of a blk record: trace_entry in the first 8 bytes, junk time."""
    raw = TraceWriter(io.BytesIO()).encode(r)
    raw = struct.pack("<HBBi", etype, 0, 0, r.pid) + b"\xee" * 8 + raw[16:]
    return raw + b"\0" * (-len(raw) % 4)


def small(data, delta):
    assert len(data) % 4 == 0 and len(data) <= 112
    return struct.pack("<I", delta << 5 | len(data) // 4) + data


def large(data, delta):
    return struct.pack("<II", delta << 5, len(data) + 4) + data


def extend(delta):
    return struct.pack("<II", (delta & ((1 << 27) - 1)) << 5 | 30, delta >> 27)


def stamp(ts):
    return struct.pack("<II", (ts & ((1 << 27) - 1)) << 5 | 31, (ts >> 27) & 0xFFFFFFFF)


def padding(length):
    return struct.pack("<II", 1 << 5 | 29, length + 4) + b"\xaa" * length  # array[0] counts itself


def page(events, ts, missed=None):
    data = b"".join(events)
    commit = len(data)
    tail = b""
    if missed is not None:
        commit |= rawpages.MISSED_EVENTS
        if missed:
            commit |= rawpages.MISSED_STORED
            tail = struct.pack("<Q", missed)
    body = struct.pack("<QQ", ts, commit) + data + tail
    return body + b"\0" * (4096 - len(body))


def page_records(data, blk_type, stats):
    return rawpages.BlkDecoder(blk_type, LAYOUT.byteorder).records(data, LAYOUT, stats, None)


def expected(*records):
    w = TraceWriter(io.BytesIO())
    return b"".join(w.encode(r._replace(sequence=0)) for r in records)


def test_page_event_kinds():
    r1 = rec(1000)
    r2 = rec(1005, action=UNPLUG, nbytes=0, pdu=(3).to_bytes(8, "big"))
    r3 = rec(1005 + (5 << 27) + 9, sector=8)
    r4 = rec((1 << 40) + 123, sector=16, pdu=b"x" * 80)  # 128-byte entry: stored with array[0]
    other = struct.pack("<HBBi", 5, 0, 0, 1) + b"hello from trace_marker\0"
    events = [small(entry(r1), 1000 - 900), small(other, 0), small(entry(r2), 5), padding(12), extend((5 << 27) + 9),
              small(entry(r3), 0), stamp((1 << 40) + 100), large(entry(r4), 23)]
    stats = rawpages.PageStats()
    out = page_records(page(events, 900), BLK, stats)
    assert out == expected(r1, r2, r3, r4)
    assert (stats.pages, stats.events, stats.records, stats.other, stats.missed_reports) == (1, 5, 4, 1, 0)


def test_unknown_blk_type_accepts_blk_sized_entries():
    stats = rawpages.PageStats()
    out = page_records(page([small(entry(rec(7)), 7)], 0), None, stats)
    assert out == expected(rec(7))


def test_null_padding_ends_page_and_missed_counts():
    events = [small(entry(rec(10)), 10), struct.pack("<II", 29, 0)]
    stats = rawpages.PageStats()
    out = page_records(page(events, 0, missed=42), BLK, stats)
    assert out == expected(rec(10))
    assert (stats.missed_reports, stats.missed_events) == (1, 42)
    stats = rawpages.PageStats()
    page_records(page([], 0, missed=0), BLK, stats)
    assert (stats.missed_reports, stats.missed_events) == (1, 0)


def test_corrupt_commit_is_counted_not_fatal():
    bad = bytearray(page([small(entry(rec(1)), 1)], 0))
    struct.pack_into("<Q", bad, 8, 5000)
    stats = rawpages.PageStats()
    assert page_records(bytes(bad), BLK, stats) == b""
    assert stats.bad_pages == 1


def test_convert_per_cpu_files(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    cpu0 = [rec(100 + i, cpu=0, sector=8 * i) for i in range(100)]
    (raw / "cpu0").write_bytes(
        page([small(entry(r), 1 if i else 100) for i, r in enumerate(cpu0[:60])], 0)
        + page([small(entry(r), 1 if i else 160) for i, r in enumerate(cpu0[60:])], 0, missed=5)
        + b"\1\2\3"  # an interrupted page write: ignored
    )
    (raw / "cpu2").write_bytes(page([small(entry(rec(50, cpu=2)), 50)], 0))
    decoder = rawpages.BlkDecoder(BLK, LAYOUT.byteorder)
    summary = rawpages.convert({0: str(raw / "cpu0"), 2: str(raw / "cpu2")}, tmp_path / "out", LAYOUT, decoder,
                               ncpus=1, names={SDA: "sda"}, extra_drops={0: 3, 2: 7})
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["sda.blktrace.0", "sda.blktrace.1", "sda.blktrace.2"]
    with TraceReader(out / "sda.blktrace.0") as r:
        got = list(r)
    assert [g.sequence for g in got] == list(range(1, 101))
    assert [g._replace(sequence=0) for g in got] == cpu0
    assert os.path.getsize(out / "sda.blktrace.1") == 0
    assert summary["devices"]["sda"]["queued"] == 101
    assert summary["lost"] == {"0": {"events": 5, "reports": 1}, "2": {"events": 7, "reports": 1}}
    assert summary["pages"]["0"]["pages"] == 2


BLKTRACE_OUT = """=== sda ===
  CPU  0:                 1000 events,       47 KiB data
  CPU  1:                  500 events,       24 KiB data
  Total:                  1500 events (dropped 12),       71 KiB data
=== sdb ===
  CPU  0:                    0 events,        0 KiB data
  Total:                     0 events (dropped 0),        0 KiB data
You have 12 (  0.8%) dropped events
Consider using a larger buffer size (-b) and/or more buffers (-n)
"""


def test_parse_blktrace_totals():
    assert parse_totals(BLKTRACE_OUT) == {"sda": {"events": 1500, "dropped": 12, "kib": 71},
                                          "sdb": {"events": 0, "dropped": 0, "kib": 0}}


def test_finish_summary_totals():
    files = {"sda.blktrace.0": {"records": 4, "queued": 1, "bytes": 4096, "file_bytes": 192},
             "sda.blktrace.1": {"records": 0, "queued": 0, "bytes": 0, "file_bytes": 0}}
    summary = {"devices": {"sda": {"files": files, "records": 4, "queued": 1, "bytes": 4096}},
               "lost": {"1": {"events": 9, "reports": 2}}}
    out = finish_summary(summary, None)
    assert (out["queued"], out["records"], out["file_bytes"], out["drops"], out["drop_reports"]) == (1, 4, 192, 9, 2)
    assert out["files"] == ["sda.blktrace.0", "sda.blktrace.1"]
    assert out["error"] is None


def test_a_live_pid_in_the_state_proves_nothing(tmp_path):
    out = tmp_path / "cap"
    out.mkdir(mode=0o700)
    assert inspect(out).kind == "none"
    state.save(out, {"version": state.VERSION, "state": "stopped"})
    assert inspect(out).kind == "stopped"
    # This very process, with its true start time: without the daemon's lock under /run it is not the capture.
    me = {"version": state.VERSION, "state": "running", "pid": os.getpid(), "pid_start": process_start(os.getpid()),
          "run_id": "0" * 32}
    state.save(out, me)
    seen = inspect(out)
    assert seen.kind == "dead" and seen.pid is None and seen.record is None
