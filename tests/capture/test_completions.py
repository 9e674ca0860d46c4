"""The events mode records completions by default: every queued IO of a request-based device (loop) and of a
bio-based one (dm-linear) is completed by a C record that ``trace.matching`` pairs with it; ``--no-completions``
records Qs only."""

import os
import shutil
import subprocess

import pytest

from blkfleet.percpu import find_per_cpu
from blkfleet.trace.actions import is_complete, is_queue
from blkfleet.trace.matching import Matcher
from blkfleet.trace.reader import TraceReader
from helpers.tracing import traced

IOS = 600


def fio_mix(dev):
    subprocess.run(["fio", "--name=mix", f"--filename={dev}", "--direct=1", "--rw=randrw", "--bs=4k",
                    "--ioengine=libaio", "--iodepth=8", "--size=16m", f"--number_ios={IOS}", "--randrepeat=0",
                    "--output-format=terse"], check=True, capture_output=True)


def events_of(outdir, name):
    """(time, is C, sector, bytes, error) of every record of a device, in time order."""
    rows = []
    for path in find_per_cpu(str(outdir), name, "blktrace"):
        with TraceReader(path) as reader:
            for rec in reader:
                if is_queue(rec.action) or is_complete(rec.action):
                    rows.append((rec.time, is_complete(rec.action), rec.sector, rec.bytes, rec.error))
    rows.sort()
    return rows


def check_paired(rows):
    """Every Q completed by a C after it, no C without its Q."""
    matcher = Matcher(empty=True)
    queued = 0
    for time, is_c, sector, nbytes, error in rows:
        if is_c:
            assert error == 0
            for qtime in matcher.completed(sector, nbytes):
                assert qtime <= time
        else:
            matcher.queued(sector, nbytes, time)
            queued += 1
    assert queued >= IOS
    assert matcher.in_flight == 0 and matcher.unmatched == 0 and matcher.forgotten == 0


@pytest.mark.root
def test_loop_device_completions_pair_with_every_q(tracer, loopdev, tmp_path):
    dev = loopdev()
    with traced([dev], tmp_path, lock=tracer, mode="events") as t:
        fio_mix(dev)
    name = os.path.basename(dev)
    assert t.queued(dev) >= IOS
    rows = events_of(tmp_path, name)
    assert sum(r[1] for r in rows) >= IOS  # at least one C per IO (no merges of random 4 KiB direct IOs)
    check_paired(rows)


@pytest.mark.root
def test_no_completions_records_q_only(tracer, loopdev, tmp_path):
    dev = loopdev()
    with traced([dev], tmp_path, lock=tracer, mode="events", completions=False) as t:
        fio_mix(dev)
    rows = events_of(tmp_path, os.path.basename(dev))
    assert t.queued(dev) >= IOS and len(rows) == t.queued(dev)
    assert not any(r[1] for r in rows)


@pytest.mark.root
def test_bio_based_device_completes_through_block_bio_complete(tracer, loopdev, tmp_path):
    """dm-linear is bio-based: its bios never reach block_rq_complete, block_bio_complete completes them."""
    if not shutil.which("dmsetup"):
        pytest.skip("needs dmsetup (Debian package dmsetup)")
    lower = loopdev()
    size = int(subprocess.run(["blockdev", "--getsz", lower], capture_output=True, text=True,
                              check=True).stdout)
    name = f"blkfleet-test-{os.getpid()}"
    made = subprocess.run(["dmsetup", "create", name, "--table", f"0 {size} linear {lower} 0"],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"device-mapper unavailable: {made.stderr.strip()}")
    try:
        subprocess.run(["udevadm", "settle"], capture_output=True)
        dm = os.path.basename(os.path.realpath(f"/dev/mapper/{name}"))
        with traced([f"/dev/{dm}"], tmp_path, lock=tracer, mode="events") as t:
            fio_mix(f"/dev/{dm}")
        assert t.queued(dm) >= IOS
        check_paired(events_of(tmp_path, dm))
    finally:
        subprocess.run(["dmsetup", "remove", "--retry", name], capture_output=True)
