"""The ftrace modes against each other on real loop devices (root): raw pages == trace_pipe bytes, and the
block_bio_queue events give the same Q records as the blk tracer."""

import os
import struct
import subprocess

import pytest

from blkfleet.capture import tracefs
from blkfleet.capture.bioevents import rwbs_action
from blkfleet.capture.ftrace import BioQueueCapture, BlkTracerCapture, ftrace_backend
from blkfleet.capture.split import Splitter
from blkfleet.errors import BlkfleetError
from blkfleet.trace import TraceReader
from blkfleet.trace.actions import C_DISCARD, C_FLUSH, C_FUA, C_META, C_READ, C_SYNC, C_WRITE, is_complete, is_queue
from blkfleet.trace.record import MAGIC
from helpers.capture_cli import fio, need


def test_rwbs_action():
    q = 0x00100001
    assert rwbs_action(b"R") == q | C_READ
    assert rwbs_action(b"WS") == q | C_WRITE | C_SYNC
    assert rwbs_action(b"FWFSM") == q | C_FLUSH | C_WRITE | C_FUA | C_SYNC | C_META
    assert rwbs_action(b"F") == q | C_READ | C_FLUSH
    assert rwbs_action(b"DE") == q | C_WRITE | C_DISCARD
    assert rwbs_action(b"N") == q | C_WRITE


def read_dir(path):
    out = {}
    for name in sorted(os.listdir(path)):
        if ".blktrace." in name:
            with TraceReader(os.path.join(path, name)) as r:
                out[name] = list(r)
    return out


def fs_workload(dev, mnt):
    """ext4 with discard, fsync'd files (flush, FUA, meta, sync), fstrim, plus direct 4 KiB IO."""
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "discard,lazy_itable_init=0,lazy_journal_init=0", dev],
                   check=True)
    subprocess.run(["mount", "-o", "nodiscard", dev, mnt], check=True)
    try:
        subprocess.run(["sh", "-c", f"cd {mnt} && for i in 1 2 3; do dd if=/dev/urandom of=f$i bs=64k count=4 "
                        "conv=fsync status=none; done; rm f2; sync"], check=True)
        subprocess.run(["fstrim", mnt], check=True)
    finally:
        subprocess.run(["umount", mnt], check=True)
    fio("--name=d", f"--filename={dev}", rw="randrw", iodepth=8, size="16M", number_ios=800)


@pytest.mark.root
def test_events_mode_equals_blk_tracer_queue_and_complete_records(tracer, loopdev, tmp_path):
    """The Q and C records of the events mode are the blk tracer's (act_mask queue,complete), field for field."""
    need("fio", "mkfs.ext4", "fstrim")
    dev = loopdev(64 << 20)
    events = BioQueueCapture([dev], tmp_path / "events", lock=tracer).setup()
    try:
        blk = BlkTracerCapture([dev], tmp_path / "blk", act_mask="queue,complete", lock=tracer).setup()
    except BaseException:
        events.finish()
        raise
    try:
        events.start()
        blk.start()
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        fs_workload(dev, str(mnt))
    finally:
        s_blk = blk.finish()
        s_events = events.finish()
    assert not os.path.exists(os.path.join(tracefs.find_tracefs(), "instances", "blkfleet"))
    name = os.path.basename(dev)
    assert s_blk["devices"][name]["queued"] == s_events["devices"][name]["queued"] > 800
    got, want = read_dir(tmp_path / "events"), read_dir(tmp_path / "blk")
    assert sorted(got) == sorted(want)
    cats = set()
    completions = 0
    gaps = []
    for fname, records in want.items():
        kept = [r for r in records if is_queue(r.action) or is_complete(r.action)]
        assert len(got[fname]) == len(kept)
        for a, b in zip(got[fname], kept):
            assert (a.sector, a.bytes, a.action, a.pid, a.device, a.cpu, a.error, a.pdu) == \
                (b.sector, b.bytes, b.action, b.pid, b.device, b.cpu, b.error, b.pdu)
            gaps.append(abs(a.time - b.time))
            cats.update(b.categories)
            completions += is_complete(b.action)
    # The two buffers stamp the same tracepoint hit on one clock: an interrupt between the two probes (or the
    # hypervisor taking the CPU) may part a few stamps by more than the usual few microseconds, never by much.
    gaps.sort()
    assert gaps[len(gaps) * 99 // 100] < 50_000 and gaps[-1] < 20_000_000, (gaps[len(gaps) // 2], gaps[-5:])
    assert {"flush", "fua", "discard", "sync", "read", "write", "complete"} <= cats
    assert completions >= 800


@pytest.mark.root
def test_raw_pages_equal_trace_pipe_bytes(tracer, loopdev, tmp_path):
    """The raw-page conversion writes exactly what the kernel's trace_pipe bin output splits into."""
    need("fio")
    dev = loopdev(32 << 20)
    cap = BlkTracerCapture([dev], tmp_path / "raw", act_mask="all", lock=tracer).setup()
    try:
        cap.start()
        fio("--name=x", f"--filename={dev}", rw="randrw", iodepth=8, size="16M", number_ios=2000)
        cap.tracer.stop()
        # The non-consuming 'trace' file shows the same buffer as trace_pipe would, in bin mode.
        with open(os.path.join(cap.tracer.tracing, "trace"), "rb") as f:
            text_view = f.read()
    finally:
        summary = cap.finish()
    pipe = Splitter(tmp_path / "pipe")
    pipe.feed(text_view[text_view.index(struct.pack("=I", MAGIC | 7)):])  # after its "# tracer: blk" header
    pipe.close()
    raw, ref = read_dir(tmp_path / "raw"), tmp_path / "pipe"
    assert summary["records"] >= 2000 * 4 and summary["lost"] == {}
    for fname in raw:
        with open(tmp_path / "raw" / fname, "rb") as a, open(ref / fname, "rb") as b:
            assert a.read() == b.read(), fname


@pytest.mark.root
def test_modes_are_chosen_by_act_mask_and_device(loopdev):
    """auto: events for act_mask queue (or queue,complete) on a whole device, raw otherwise; pipe (retired) is
    raw."""
    dev = loopdev(8 << 20)
    assert type(ftrace_backend([dev], "/nonexistent")) is BioQueueCapture
    assert type(ftrace_backend([dev], "/nonexistent", act_mask="queue,complete")) is BioQueueCapture
    assert type(ftrace_backend([dev], "/nonexistent", act_mask="queue,issue")) is BlkTracerCapture
    assert type(ftrace_backend([dev], "/nonexistent", mode="pipe")) is BlkTracerCapture
    assert type(ftrace_backend([dev], "/nonexistent", mode="events")) is BioQueueCapture
    with pytest.raises(BlkfleetError, match="the events mode records queue \\(and complete\\) events only"):
        ftrace_backend([dev], "/nonexistent", mode="events", act_mask="all")
    with pytest.raises(BlkfleetError, match="unknown ftrace mode 'trace_pipe'"):
        ftrace_backend([dev], "/nonexistent", mode="trace_pipe")


@pytest.mark.root
def test_a_kernel_without_per_cpu_raw_files_is_one_line(tracer, loopdev, tmp_path, monkeypatch):
    """Why the trace_pipe mode could go: a kernel without per_cpu/cpuN/trace_pipe_raw (none that blkfleet runs on;
    faked here, the real files are in every other capture test) fails set-up with one line, nothing left."""
    dev = loopdev(8 << 20)
    _, trace_dir = tracefs.device_trace_dir(dev)
    tracing = tracefs.find_tracefs()
    before = tracefs.TracerState.snapshot(tracing, [trace_dir])
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: not str(p).endswith("trace_pipe_raw") and real_exists(p))
    with pytest.raises(BlkfleetError, match="has no cpuN/trace_pipe_raw"):
        BlkTracerCapture([dev], tmp_path / "out", lock=tracer).setup()
    monkeypatch.undo()
    assert not before.differences(tracefs.TracerState.snapshot(tracing, [trace_dir]))
    assert sorted(os.listdir(tmp_path / "out")) == []
