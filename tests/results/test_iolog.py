"""The per-IO log: what the writer writes is read back column by column; a log whose writer was killed keeps its
whole blocks; damage is one error naming the file and offset; an existing file is never overwritten."""

import os

import pytest

from blkfleet.errors import BlkfleetError
from blkfleet.results.iolog import COLUMNS, IOLog, IOLogWriter, block_size, is_iolog


def columns(n, shift=0):
    return [[k + shift for k in range(n)], [k - 5 for k in range(n)], [1000 + k for k in range(n)],
            [4096 if k % 7 else -5 for k in range(n)], [4096 * k for k in range(n)], [4096] * n,
            [k % 2 for k in range(n)], [k % 3 for k in range(n)]]


def test_round_trip(tmp_path):
    path = str(tmp_path / "io.log")
    w = IOLogWriter(path, [("sda", "/dev/loop3"), ("sdb", "/dev/loop4")], 123, 456)
    w.write_block(1, 0, 1000, columns(5))
    w.write_block(2, 1, 2000, columns(3, 100))
    w.close()
    assert is_iolog(path) and not is_iolog(__file__)
    with IOLog(path) as log:
        assert log.devices == [("sda", "/dev/loop3"), ("sdb", "/dev/loop4")] and log.complete
        assert (log.start_monotonic_ns, log.start_wall_ns, log.records) == (123, 456, 8)
        blocks = list(log.blocks())
    assert [(it, w, s) for it, w, s, _c in blocks] == [(1, 0, 1000), (2, 1, 2000)]
    for (_it, _w, _s, got), want in zip(blocks, (columns(5), columns(3, 100))):
        assert [list(got[name]) for name, _code in COLUMNS] == want
    with pytest.raises(BlkfleetError, match="File exists"):
        IOLogWriter(path, [("sda", "/dev/loop3")], 0, 0)


def test_a_killed_writer_leaves_its_whole_blocks(tmp_path):
    path = str(tmp_path / "io.log")
    w = IOLogWriter(path, [("sda", "/dev/loop3"), ("sdb", "/dev/loop4")], 0, 0)
    w.write_block(1, 0, 0, columns(10))
    w.write_block(1, 0, 0, columns(10, 10))
    w._f.flush()  # as a killed writer leaves it: no final header
    size = os.path.getsize(path)
    os.truncate(path, size - block_size(10) // 2)
    with IOLog(path) as log:
        assert not log.complete
        assert [list(c["submit_ns"]) for *_x, c in log.blocks()] == [list(range(10))]


@pytest.mark.parametrize("header", [b"IOBK" + (1 << 24).to_bytes(4, "little"), b"XXXX" + (10).to_bytes(4, "little")])
def test_a_killed_writers_damaged_block_header_is_an_error(tmp_path, header):
    """In a log whose writer was killed, a whole block header with a count above 2^20 was taken for a cut-off last
    block: the reader stopped there and every later block was dropped without a word."""
    path = str(tmp_path / "io.log")
    w = IOLogWriter(path, [("sda", "/dev/loop3"), ("sdb", "/dev/loop4")], 0, 0)
    for b in range(3):
        w.write_block(1, 0, 0, columns(10, 10 * b))
    w._f.flush()  # no final header: COMPLETE clear
    second = w.header_size + block_size(10)
    with open(path, "r+b") as f:
        f.seek(second)
        f.write(header)
    with pytest.raises(BlkfleetError, match=f"offset {second}: bad block header"), IOLog(path) as log:
        assert not log.complete
        list(log.blocks())


def test_damage_is_one_error(tmp_path):
    path = str(tmp_path / "io.log")
    w = IOLogWriter(path, [("sda", "/dev/loop3"), ("sdb", "/dev/loop4")], 0, 0)
    w.write_block(1, 0, 0, columns(10))
    w.close()
    os.truncate(path, os.path.getsize(path) - 8)
    with pytest.raises(BlkfleetError, match="offset .*: truncated block"), IOLog(path) as log:
        list(log.blocks())
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"NOTALOG" + bytes(100))
    with pytest.raises(BlkfleetError, match="not a blkfleet IO log"):
        IOLog(str(bad))
    dev = tmp_path / "dev.log"
    cols = columns(10)
    cols[6] = [5] * 10
    w = IOLogWriter(str(dev), [("sda", "/dev/loop3")], 0, 0)
    w.write_block(1, 0, 0, cols)
    w.close()
    with pytest.raises(BlkfleetError, match="device index beyond"), IOLog(str(dev)) as log:
        list(log.blocks())
    for column, value, message in ((7, 9, "operation code 9 unknown"), (0, -1, "negative submit time"),
                                   (2, -3, "negative submit time or latency"), (4, 1 << 63, "offset beyond")):
        cols = columns(10)
        cols[column] = [value] * 10
        path = tmp_path / f"col{column}.log"
        w = IOLogWriter(str(path), [("sda", "/dev/loop3"), ("sdb", "/dev/loop4")], 0, 0)
        w.write_block(1, 0, 0, cols)
        w.close()
        with pytest.raises(BlkfleetError, match=message), IOLog(str(path)) as log:
            list(log.blocks())


def test_version_0_is_refused(tmp_path):
    path = tmp_path / "io.log"
    w = IOLogWriter(str(path), [("sda", "/dev/loop3")], 0, 0)
    w.write_block(1, 0, 0, columns(4))
    w.close()
    data = bytearray(path.read_bytes())
    data[8:10] = b"\0\0"
    path.write_bytes(bytes(data))
    with pytest.raises(BlkfleetError, match="offset 8.*bad IO log version 0"):
        IOLog(str(path))
