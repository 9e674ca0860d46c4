"""The record splitter, on synthetic streams built with TraceWriter."""

import io
import os
import random

import pytest

from blkfleet.capture.split import Splitter, device_name
from blkfleet.errors import TraceFormatError
from blkfleet.trace import TraceReader, TraceRecord, TraceWriter

SDA = 8 << 20
SDB = 8 << 20 | 16
NAMES = {SDA: "sda", SDB: "sdb"}
Q_READ = 0x00110001
Q_WRITE = 0x001A0001
GETRQ = 0x00110004
COMPLETE = 0x00810008
UNPLUG = 0x0011000A
MESSAGE = 0x04000002


def rec(time, cpu, action=Q_READ, dev=SDA, sector=0, nbytes=4096, pdu=b""):
    return TraceRecord(time, sector, nbytes, action, 1234, dev, cpu, 0, pdu)


def encode(*records):
    w = TraceWriter(io.BytesIO())
    return b"".join(w.encode(r) for r in records)


def split_stream(chunks, outdir, lost=(), **options):
    """Split byte chunks into ``outdir``, then account ``lost`` [(cpu, events)]; the summary."""
    with Splitter(outdir, **options) as splitter:
        for chunk in chunks:
            splitter.feed(chunk)
        for cpu, events in lost:
            splitter.add_lost(cpu, events)
    return splitter.summary()


LOST = [(1, 42), (0, 0)]


def sample():
    """A stream over two devices and two CPUs, with payloads and a notify (and LOST: drops of both CPUs)."""
    records = [
        rec(100, 0, Q_WRITE, sector=8),
        rec(110, 0, GETRQ, sector=8),
        rec(120, 1, Q_READ, dev=SDB, sector=16, nbytes=8192),
        rec(130, 1, UNPLUG, nbytes=0, pdu=(1).to_bytes(8, "big")),
        rec(140, 0, MESSAGE, nbytes=0, pdu=b"hello\0"),
        rec(150, 1, COMPLETE, sector=8),
        rec(160, 0, Q_READ, sector=64, nbytes=512),
    ]
    return encode(*records), records


def chunks(data, sizes):
    pos = 0
    for size in sizes:
        if pos >= len(data):
            return
        yield data[pos:pos + size]
        pos += size
    if pos < len(data):
        yield data[pos:]


def read_dir(path):
    out = {}
    for name in sorted(os.listdir(path)):
        with TraceReader(os.path.join(path, name)) as r:
            out[name] = list(r)
    return out


def check_sample(outdir, summary, records):
    files = read_dir(outdir)
    assert sorted(files) == ["sda.blktrace.0", "sda.blktrace.1", "sdb.blktrace.0", "sdb.blktrace.1"]
    assert [r.sequence for r in files["sda.blktrace.0"]] == [1, 2, 0, 3]
    assert [r.sequence for r in files["sda.blktrace.1"]] == [1, 2]
    assert [r.sequence for r in files["sdb.blktrace.1"]] == [1]
    assert files["sdb.blktrace.0"] == []
    expected = {}
    for r in records:
        expected.setdefault(f"{NAMES[r.device]}.blktrace.{r.cpu}", []).append(r)
    for name, got in files.items():
        assert [g._replace(sequence=0) for g in got] == expected.get(name, [])
    sda = summary["devices"]["sda"]
    assert (sda["records"], sda["queued"], sda["bytes"], sda["dev"]) == (6, 2, 4096 + 512, "8,0")
    sdb = summary["devices"]["sdb"]
    assert (sdb["records"], sdb["queued"], sdb["bytes"], sdb["dev"]) == (1, 1, 8192, "8,16")
    cpu1 = sda["files"]["sda.blktrace.1"]
    assert (cpu1["drops"], cpu1["drop_reports"], cpu1["file_bytes"]) == (42, 1, 48 + 56)
    assert sda["files"]["sda.blktrace.0"]["drop_reports"] == 1
    assert summary["lost"] == {"0": {"events": 0, "reports": 1}, "1": {"events": 42, "reports": 1}}
    assert summary["skipped_bytes"] == 0
    assert summary["records"] == 7


def test_split_whole_stream(tmp_path):
    stream, records = sample()
    summary = split_stream([stream], tmp_path, LOST, ncpus=2, names=NAMES)
    check_sample(tmp_path, summary, records)


@pytest.mark.parametrize("size", [1, 3, 5, 47, 48, 49, 50, 97, 200])
def test_split_any_chunking(tmp_path, size):
    stream, records = sample()
    summary = split_stream(chunks(stream, [size] * len(stream)), tmp_path, LOST, ncpus=2, names=NAMES)
    check_sample(tmp_path, summary, records)


def test_split_random_chunking(tmp_path):
    stream, records = sample()
    rng = random.Random(7)
    for i in range(20):
        sizes = [rng.randint(1, 120) for _ in range(len(stream))]
        out = tmp_path / str(i)
        check_sample(out, split_stream(chunks(stream, sizes), out, LOST, ncpus=2, names=NAMES), records)


def test_bytes_that_are_no_record_are_refused(tmp_path):
    stream = encode(rec(1, 0)) + b"\x00garbage CPU:1 [LOST 5 EVENTS]\n" + b"\0" * 48 + encode(rec(2, 0))
    with pytest.raises(TraceFormatError, match="offset 48: not a v7 record"):
        split_stream(chunks(stream, [5] * 100), tmp_path, ncpus=2, names=NAMES)


def test_truncated_tail_is_skipped(tmp_path):
    stream = encode(rec(1, 0), rec(2, 0))
    summary = split_stream([stream[:-10]], tmp_path, ncpus=1, names=NAMES)
    assert summary["devices"]["sda"]["records"] == 1
    assert summary["skipped_bytes"] == 38


def test_empty_files_up_to_highest_cpu(tmp_path):
    summary = split_stream([encode(rec(1, 3))], tmp_path, [(5, 1)], ncpus=1, names=NAMES)
    assert sorted(os.listdir(tmp_path)) == [f"sda.blktrace.{c}" for c in range(6)]
    assert summary["devices"]["sda"]["files"]["sda.blktrace.3"]["records"] == 1
    assert os.path.getsize(tmp_path / "sda.blktrace.0") == 0


def test_declared_devices_get_files(tmp_path):
    split_stream([], tmp_path, ncpus=2, names=NAMES, devices=[SDB])
    assert sorted(os.listdir(tmp_path)) == ["sdb.blktrace.0", "sdb.blktrace.1"]


def test_large_stream_bounded_pending(tmp_path):
    records = [rec(t, t % 2, Q_WRITE if t % 3 else GETRQ, sector=t * 8) for t in range(1, 5001)]
    stream = encode(*records)
    sp = Splitter(tmp_path, ncpus=2, names=NAMES)
    for piece in chunks(stream, [4093] * len(stream)):
        sp.feed(piece)
        assert len(sp._pending) < 4093 + 48
    summary = sp.close()
    assert summary["devices"]["sda"]["records"] == 5000
    assert summary["devices"]["sda"]["queued"] == sum(1 for t in range(1, 5001) if t % 3)
    files = read_dir(tmp_path)
    assert [r.sequence for r in files["sda.blktrace.1"]] == list(range(1, 2501))


def test_version_8_is_refused(tmp_path):
    w = TraceWriter(io.BytesIO(), version=8)
    with pytest.raises(TraceFormatError, match="version 8"):
        split_stream([w.encode(rec(1, 0))], tmp_path, ncpus=1, names=NAMES)


def test_device_name_fallback():
    assert device_name(4095 << 20 | 77) == "4095,77"
    if os.path.exists("/sys/dev/block/7:0"):
        assert device_name(7 << 20) == "loop0"
