"""Replay files holding values no consumer can hold: every command that reads them (``bundle create``, ``replay``)
fails with one line naming the file and the byte offset, exit 2, never a traceback.

The readers refuse an op the format does not define, unknown flag bits, a time of 2^63 ns or more, an extent
ending beyond 2^63 - 1 bytes, and a bunch whose packet count is more than the file holds (never allocated).
"""

import re
import struct

import pytest

from blkfleet.errors import BlkfleetError, TraceFormatError
from blkfleet.replayfile import compat, iter_ios, native, open_replay
from helpers.synth import fails, run_cli

OK = (8, 4096, 0, 0, 0, 1)


def native_file(path, packets, time=1000):
    w = native.NativeWriter(str(path), 0x700001, 0, 64)
    w.add_bunch(time, packets)
    w.close()
    return path


BAD_NATIVE = {
    "op5": ([(8, 4096, 0, 5, 0, 1)], 1000, "unknown op 5", 64 + 16 + 16),
    "op200": ([(8, 4096, 0, 200, 0, 1)], 1000, "unknown op 200", 64 + 16 + 16),
    "flags": ([(8, 4096, 0, 1, 0x80, 1)], 1000, "unknown flags 0x80", 64 + 16 + 16),
    "sector2^54": ([(1 << 54, 4096, 0, 0, 0, 1)], 1000, "ends beyond 2^63 - 1 bytes", 64 + 16),
    "sector2^63": ([(1 << 63, 4096, 0, 0, 0, 1)], 1000, "ends beyond 2^63 - 1 bytes", 64 + 16),
    "sector-end": ([OK, ((1 << 54) - 1, 4096, 0, 0, 0, 1)], 1000, "ends beyond", 64 + 16 + 24),
    "time2^63": ([OK], 1 << 63, "2^63 ns or more", 64 + 8),
    "time+dt": ([OK, (16, 4096, 10, 0, 0, 1)], (1 << 63) - 5, "2^63 ns or more", 64 + 8),
}


@pytest.mark.parametrize("case", BAD_NATIVE)
@pytest.mark.parametrize("command", ["bundle", "replay"])
def test_native_values_out_of_range(tmp_path, case, command):
    packets, time, message, offset = BAD_NATIVE[case]
    native_file(tmp_path / "sda.replay.0", packets, time)
    if command == "bundle":
        result = run_cli("bundle", "create", "-d", tmp_path, "-o", tmp_path / "b.bundle", "sda")
    else:  # the streams are read before any target is opened: no device needed
        result = run_cli("replay", "-d", tmp_path, "sda")
    fails(result, tmp_path / "sda.replay.0", message, f"offset {offset}:")
    assert not (tmp_path / "b.bundle").exists()


def test_largest_valid_values_are_read(tmp_path):
    """The limits are exact: the last sector whose extent still fits, and a time just below 2^63."""
    last = ((1 << 63) - 1 - 4096) // 512
    path = native_file(tmp_path / "sda.replay.0", [(last, 4096, 0, 4, 0x1F, 1)], (1 << 63) - 1)
    with open_replay(path) as r:
        assert list(iter_ios(r)) == [((1 << 63) - 1, last, 4096, 4, 0x1F)]


def test_huge_bunch_count_in_a_tiny_native_file(tmp_path):
    """npkts 0xFFFFFFFF after the header: a 96 GiB read was asked for (MemoryError). Now bounded by the file."""
    head = native_file(tmp_path / "x", [OK]).read_bytes()[:native.HEADER.size]
    path = tmp_path / "sda.replay.0"
    path.write_bytes(head + struct.pack("<IIQ", 0xFFFFFFFF, 0, 0) + bytes(24))  # as long as its header's one IO
    (tmp_path / "x").unlink()
    fails(run_cli("bundle", "create", "-d", tmp_path, "-o", tmp_path / "b", "sda"),
                   "offset 64:", "bad bunch size 4294967295")
    path.write_bytes(head + struct.pack("<IIQ", 1000, 0, 0) + bytes(24 * 3))
    fails(run_cli("replay", "-d", tmp_path, "sda"), "offset 80:", "truncated bunch (72 of 24000 bytes")


@pytest.mark.parametrize("kind", ["native", "btrecord"])
def test_a_file_shorter_than_its_header_counts_is_refused_before_any_io(tmp_path, kind):
    """Cut short at any point before its counted IOs end: refused on opening, before a replay sends anything
    (reading to the end found it only after the file's IOs were sent)."""
    path = tmp_path / "sda.replay.0"
    w = native.NativeWriter(str(path), 0x700001, 0, 64) if kind == "native" else compat.BtrecordWriter(str(path))
    for b in range(6):
        w.add_bunch(1000 + b, [(8 * k, 4096, 0, 0, 0, 1) if kind == "native" else (8 * k, 4096, 1)
                               for k in range(4)])
    w.close()
    data = path.read_bytes()
    counted = 6 if kind == "native" else 5  # btrecord's header leaves out the last bunch
    least = len(data) - (6 - counted) * (len(data) - 32) // 6 if kind == "btrecord" else len(data)
    for cut in (least - 1, least - 24, 70, 100):
        path.write_bytes(data[:cut])
        with pytest.raises(Exception, match="cut short") as caught:
            open_replay(str(path))
        assert f"offset {cut}" in str(caught.value)
        fails(run_cli("replay", "-d", tmp_path, "sda"), "cut short", f"offset {cut}:")


def test_huge_bunch_count_in_a_40_byte_btrecord_file(tmp_path):
    path = tmp_path / "sda.replay.0"
    path.write_bytes(compat.HEADER.pack(compat.VERSION, 0, 0, 0) + struct.pack("<Q", 0xFFFFFFFF))
    assert path.stat().st_size == 40
    fails(run_cli("bundle", "create", "-d", tmp_path, "-o", tmp_path / "b", "sda"), "offset 32:")
    path.write_bytes(compat.HEADER.pack(compat.VERSION, 0, 0, 0) + compat.BUNCH.pack(0xFFFFFFFF, 1))
    fails(run_cli("replay", "-d", tmp_path, "sda"), "offset 32:", "bad bunch size 4294967295")


@pytest.mark.parametrize("sector, nbytes, stamp, message", [
    (1 << 54, 4096, 1000, "ends beyond 2^63 - 1 bytes"),
    ((1 << 64) - 1, 4096, 1000, "ends beyond 2^63 - 1 bytes"),
    (8, 4096, 1 << 63, "2^63 ns or more"),
    (8, 1 << 63, 1000, "IO length 9223372036854775808 bytes is more than 4294967295"),  # found by tests/fuzz
])
@pytest.mark.parametrize("command", ["bundle", "replay"])
def test_btrecord_values_out_of_range(tmp_path, sector, nbytes, stamp, message, command):
    w = compat.BtrecordWriter(str(tmp_path / "sda.replay.0"))
    w.add_bunch(stamp, [(sector, nbytes, 1)])
    w.add_bunch(stamp, [(8, 4096, 1)])  # btreplay's header leaves the last bunch out: put it second
    w.close()
    if command == "bundle":
        result = run_cli("bundle", "create", "-d", tmp_path, "-o", tmp_path / "b", "sda")
    else:
        result = run_cli("replay", "-d", tmp_path, "sda")
    fails(result, tmp_path / "sda.replay.0", message)


def test_native_max_pkts_beyond_the_format(tmp_path):
    w = native.NativeWriter(str(tmp_path / "sda.replay.0"), 0x700001, 0, 1 << 20)
    w.add_bunch(1000, [OK])
    w.close()
    fails(run_cli("bundle", "create", "-d", tmp_path, "-o", tmp_path / "b", "sda"), "offset 56:",
                   "bad max_pkts")


@pytest.mark.parametrize("command", ["bundle", "stats"])
def test_btrecord_file_cut_at_a_bunch_boundary(tmp_path, command):
    """A btrecord file that lost its last bunches whole was read as complete (its IOs silently missing): its header
    counts every bunch but the last, so holding fewer is refused. The last bunch alone cannot be told missing."""
    path = tmp_path / "sda.replay.0"
    w = compat.BtrecordWriter(str(path))
    for b in range(4):
        w.add_bunch(1000 + b, [(8 * k, 4096, 1) for k in range(3)])
    w.close()
    data = path.read_bytes()
    bunch = compat.BUNCH.size + 3 * compat.PACKET.size
    path.write_bytes(data[:-2 * bunch])
    if command == "bundle":
        result = run_cli("bundle", "create", "-d", tmp_path, "-o", tmp_path / "b.bundle", "sda")
    else:
        result = run_cli("stats", tmp_path)
    fails(result, path, f"offset {32 + 2 * bunch}:", f"{32 + 2 * bunch} bytes, fewer than the {32 + 3 * bunch} its "
          "header's 9 IOs in 3 bunches take: cut short")
    path.write_bytes(data[:-bunch])
    with open_replay(path) as r:
        assert len(list(iter_ios(r))) == 9


def test_native_version_0_is_refused(tmp_path):
    path = native_file(tmp_path / "sda.replay.0", [OK])
    data = bytearray(path.read_bytes())
    data[8:10] = b"\0\0"
    path.write_bytes(bytes(data))
    fails(run_cli("replay", "-d", tmp_path, "sda"), "offset 8:", "bad replay format version 0")


def parents_file(path, parents):
    """A version 2 file of one bunch: an IO without parents, then IO 2000 with ``parents`` parents (1, 2, ...
    back), its ndeps at offset 64 + 16 + 2 * 24 + 32 + 24 = 184; more than MAX_DEPS are put in by hand."""
    w = native.NativeWriter(str(path), 0x700001, 0, 64, timing=True)
    w.add_bunch(1000, [OK, (16, 4096, 10, 0, 0, 1)],
                [(0, 0, 500, 1, []), (2000, 0, 500, 1, list(range(1, min(parents, native.MAX_DEPS) + 1)))])
    w.close()
    if parents > native.MAX_DEPS:
        data = bytearray(path.read_bytes())
        extra = struct.pack(f"<{parents - native.MAX_DEPS}I", *range(native.MAX_DEPS + 1, parents + 1))
        extra += bytes(-len(extra) % 8)
        struct.pack_into("<I", data, 68, struct.unpack_from("<I", data, 68)[0] + len(extra))
        struct.pack_into("<H", data, 184, parents)
        path.write_bytes(bytes(data) + extra)
    return path


def test_the_parents_limit_is_each_ios(tmp_path):
    """At most MAX_DEPS (1024) parents per IO, as docs/formats.md says, on writing and reading: the reader bounded
    only a bunch's extension (1024 per IO on average), so an IO of a bunch could hold up to 65535."""
    path = parents_file(tmp_path / "sda.replay.0", native.MAX_DEPS)
    with open_replay(path, timing=True) as r:
        assert [list(c.timing.ndeps) for c in r.chunks()] == [[0, native.MAX_DEPS]]
    with pytest.raises(BlkfleetError, match="IO 2000: 1025 parents, a replay file holds at most 1024 per IO"):
        native.encode_timing([(2000, 0, 500, 1, list(range(1, 1026)))])
    parents_file(path, native.MAX_DEPS + 1)
    too_many = r"offset 184: an IO with 1025 parents \(at most 1024\)"
    with open_replay(path, timing=True) as r, pytest.raises(TraceFormatError, match=too_many):
        list(r.chunks())
    fails(run_cli("replay", "-d", tmp_path, "--mode", "dependency", "sda"), path, "offset 184:",
          "an IO with 1025 parents (at most 1024)")


@pytest.mark.parametrize("timing", [True, False], ids=["with extensions", "without"])
@pytest.mark.parametrize("command", ["bundle", "replay"])
def test_native_version_2_without_the_timing_flag_is_refused(tmp_path, timing, command):
    """Version 2 is a file with the TIMING flag (docs/formats.md; record writes a file without timing as version
    1): without it such a file was read as version 1, its bunches' extension sizes taken for reserved zeros (then
    the first extension for a bunch header)."""
    path = parents_file(tmp_path / "sda.replay.0", 1) if timing else native_file(tmp_path / "sda.replay.0", [OK])
    data = bytearray(path.read_bytes())
    struct.pack_into("<HHI", data, 8, 2, native.HEADER.size, native.F_COMPLETE)
    path.write_bytes(bytes(data))
    if command == "bundle":
        result = run_cli("bundle", "create", "-d", tmp_path, "-o", tmp_path / "b.bundle", "sda")
    else:
        result = run_cli("replay", "-d", tmp_path, "sda")
    fails(result, path, "offset 12:", "version 2 file without the TIMING flag (a file without timing is version 1)")
    assert not (tmp_path / "b.bundle").exists()


AFTER_ISSUE = 1 << 31
BAD_TIMING = {  # the timing of two IOs of one bunch: (seq, think, parents as stored) each
    "parent-before-first": ([(3, 0, []), (4, 0, [5])], "a parent before the device's first IO"),
    "issue-parent-before-first": ([(3, 0, []), (4, 0, [AFTER_ISSUE | 5])], "a parent before the device's first IO"),
    "far-in-a-long-run": ([(10, 0, [1, 2]), (11, 0, [1, 12])], "a parent before the device's first IO"),
    "itself": ([(3, 0, []), (4, 0, [1, 0])], "an IO depends on itself"),
    "itself-after-issue": ([(3, 0, []), (4, 0, [AFTER_ISSUE])], "an IO depends on itself"),
    "seq-falls": ([(4, 0, []), (4, 0, [])], "IO numbers (seq) do not rise"),
    "think-negative": ([(3, 0, []), (4, 1 << 63, [1])], "a negative IO number or think time"),
}


@pytest.mark.parametrize("case", BAD_TIMING)
def test_timing_no_replay_can_hold_is_refused(tmp_path, case):
    """A version 2 run whose IO numbers do not rise, with a negative think time, an IO its own parent, or a parent
    (completion or issue) before the device's first IO, is refused with one line naming the run's offset; the
    same IOs with parents within reach read."""
    ios, message = BAD_TIMING[case]
    path = tmp_path / "sda.replay.0"
    w = native.NativeWriter(str(path), 0x700001, 0, 64, timing=True)
    w.add_bunch(1000, [OK, (16, 4096, 10, 0, 0, 1)], [(seq, think, 500, 1, deps) for seq, think, deps in ios])
    w.close()
    refused = pytest.raises(TraceFormatError, match=re.escape(f"offset 64: {message}"))
    with open_replay(str(path), timing=True) as r, refused:
        list(r.chunks())
    fails(run_cli("replay", "-d", tmp_path, "--mode", "dependency", "sda"), path, "offset 64:", message)
    good = [(3, 0, 500, 1, []), (4, 0, 500, 1, [1, AFTER_ISSUE | 4])]
    w = native.NativeWriter(str(path), 0x700001, 0, 64, timing=True)
    w.add_bunch(1000, [OK, (16, 4096, 10, 0, 0, 1)], good)
    w.close()
    with open_replay(str(path), timing=True) as r:
        assert [list(c.timing.seqs) for c in r.chunks()] == [[3, 4]]
