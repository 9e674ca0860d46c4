"""The replay file readers (block reads, bunch headers walked at once where they are regular, limits tested on
columns) give exactly what the obvious reader below gives: the same IOs, and for a bad file the same error (byte
offset and text) after the same IOs. Both formats; valid files of regular and irregular bunches over many
blocks, then the same files damaged (bytes changed in headers and packets, cut anywhere), read with the normal
block size and with tiny ones (bunches cut by block ends, bunches larger than a block).
"""

import random
import struct

import pytest

import blkfleet.replayfile.reader as reader_mod
from blkfleet.errors import TraceFormatError
from blkfleet.replayfile import compat, iter_ios, native, open_replay
from blkfleet.replayfile.ops import FLAG_NAMES, OP_NAMES, READ, WRITE

CASES = 300
BLOCK = reader_mod.BLOCK
MAX_TIME = (1 << 63) - 1
KNOWN_FLAGS = sum(bit for bit, _ in FLAG_NAMES)


def obvious_ios(path):
    """(IOs, (offset, problem) or None): one bunch at a time, every rule of docs/formats.md tested IO by IO."""
    data = open(path, "rb").read()
    ios = []
    if data[:8] == native.MAGIC:
        fields = native.HEADER.unpack_from(data)
        hsize, count, nbunches = fields[2], fields[6], fields[7]
        bunch, packet, limit = struct.Struct("<I4xQ"), native.PACKET, native.MAX_BUNCH
    else:
        hsize, bunch, packet, limit = compat.HEADER.size, compat.BUNCH, compat.PACKET, compat.MAX_PKTS
        _version, _genesis, nbunches, count = compat.HEADER.unpack_from(data)
    least = hsize + 16 * nbunches + 24 * count
    if len(data) < least:
        return ios, (len(data), f"{len(data)} bytes, fewer than the {least} its header's {count} IOs in {nbunches} "
                                "bunches take: cut short")
    at = hsize
    bunches = 0
    while at < len(data):
        if len(data) - at < 16:
            return ios, (at, f"truncated bunch header ({len(data) - at} of 16 bytes)")
        npkts, stamp = bunch.unpack_from(data, at)
        if not 0 < npkts <= limit:
            return ios, (at, f"bad bunch size {npkts} (1..{limit})")
        size = 24 * npkts
        if size > len(data) - at - 16:
            return ios, (at + 16, f"truncated bunch ({len(data) - at - 16} of {size} bytes for {npkts} IOs)")
        packets = list(packet.iter_unpack(data[at + 16 : at + 16 + size]))
        if data[:8] == native.MAGIC:
            last = stamp + max(p[2] for p in packets)
            if last > MAX_TIME:
                return ios, (at + 8, f"time {last} ns is 2^63 ns or more")
            for i, p in enumerate(packets):
                if p[3] >= len(OP_NAMES) or p[4] & ~KNOWN_FLAGS:
                    what = f"op {p[3]} (0..{len(OP_NAMES) - 1})" if p[3] >= len(OP_NAMES) else f"flags 0x{p[4]:02x}"
                    return ios, (at + 16 + 24 * i + 16, f"unknown {what}")
            rows = [(stamp + p[2], p[0], p[1], p[3], p[4]) for p in packets]
        else:
            if stamp > MAX_TIME:
                return ios, (at + 8, f"time {stamp} ns is 2^63 ns or more")
            for i, p in enumerate(packets):
                if p[1] > 0xFFFFFFFF:
                    return ios, (at + 16 + 24 * i + 8, f"IO length {p[1]} bytes is more than 4294967295")
            rows = [(stamp, p[0], p[1], READ if p[2] else WRITE, 0) for p in packets]
        for i, p in enumerate(packets):
            if p[0] * 512 + p[1] > MAX_TIME:
                return ios, (at + 16 + 24 * i, f"sector {p[0]} + {p[1]} bytes ends beyond 2^63 - 1 bytes")
        ios += rows
        bunches += 1
        at += 16 + size
    if data[:8] == native.MAGIC and (len(ios), bunches) != (count, nbunches):
        return ios, (at, f"holds {len(ios)} IOs in {bunches} bunches, its header says {count} in {nbunches}")
    if data[:8] != native.MAGIC and (bunches < nbunches or len(ios) < count):
        return ios, (at, f"holds {len(ios)} IOs in {bunches} bunches, fewer than its header's {count} in "
                         f"{nbunches}: cut short")
    return ios, None


def read(path):
    ios = []
    try:
        with open_replay(path) as r:
            for io in iter_ios(r):
                ios.append(io)
    except TraceFormatError as e:
        assert e.path == str(path)
        return ios, (e.offset, e.problem)
    return ios, None


def columns(path):
    """The IOs of chunks(), with pids for native files."""
    with open_replay(path) as r:
        return [(list(c), None if c.pids is None else list(c.pids)) for c in r.chunks()]


def seed_file(rng, path, fmt):
    """A valid file: mostly full bunches (so that runs of them are regular), some short ones."""
    size = rng.choice([1, 8, 16, 64]) if fmt == "btrecord" else rng.choice([1, 8, 17, 64, 300])
    t = rng.choice([0, 10**9, MAX_TIME - (1 << 40)])
    writer = native.NativeWriter(str(path), 0x700001, 0, size) if fmt == "native" else compat.BtrecordWriter(str(path))
    for _ in range(rng.choice([1, 3, 40, 400])):
        n = size if rng.random() < 0.8 else rng.randrange(1, size + 1)
        if fmt == "native":
            packets = [(rng.randrange(1 << rng.choice([20, 47, 54])), rng.choice([0, 4096, 0xFFFFFFFF]),
                        sorted(rng.randrange(1 << 20) for _ in range(2))[0], rng.randrange(5),
                        rng.randrange(32), rng.randrange(1 << 32)) for _ in range(n)]
        else:
            packets = [(rng.randrange(1 << rng.choice([20, 47, 53])), rng.choice([4096, 0xFFFFFFFF]),
                        rng.choice([0, 1, 1, 2])) for _ in range(n)]
        writer.add_bunch(t, packets)
        t += rng.randrange(1 << 24)
    writer.close()


def damage(rng, data, start):
    """Bytes after the file header (``start``) changed, or the file cut."""
    data = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(4)
        at = rng.randrange(start, len(data)) if len(data) > start else start
        if kind == 0:  # a byte of a packet or a bunch header
            data[at : at + 1] = bytes([rng.choice([0, 1, 5, 0x20, 0x40, 0x7F, 0x80, 0xFF])])
        elif kind == 1:  # cut
            del data[at:]
        elif kind == 2:  # the top byte of a sector, a length or a time
            data[at - at % 8 + 7 : at - at % 8 + 8] = b"\x80"
        else:  # a bunch count
            data[at : at + 4] = struct.pack("<I", rng.choice([0, 1, 3, 65, 513, 1 << 16, (1 << 16) + 1]))
    return bytes(data)


@pytest.mark.parametrize("fmt", ["native", "btrecord"])
def test_readers_equal_the_obvious_reader(tmp_path, fmt, monkeypatch):
    path = tmp_path / "sda.replay.0"
    outcomes = {"ok": 0, "error": 0}
    for case in range(CASES):
        rng = random.Random(f"{fmt}-{case}")
        seed_file(rng, path, fmt)
        if case % 3:
            path.write_bytes(damage(rng, path.read_bytes(), 64 if fmt == "native" else 32))
        monkeypatch.setattr(reader_mod, "BLOCK", rng.choice([BLOCK, 16, 61, 200, 1000, 5000]))
        want = obvious_ios(path)
        got = read(path)
        assert got == want, case
        if want[1] is None:
            chunks = columns(path)
            assert [io for c, _ in chunks for io in c] == want[0]
            if fmt == "native":
                with open_replay(path) as r:
                    pids = [p[5] for _t, packets in r.bunches() for p in packets]
                assert [p for _, c in chunks for p in c] == pids
        outcomes["error" if want[1] else "ok"] += 1
    assert min(outcomes.values()) > CASES // 5, outcomes
